"""One poll of one source, end to end: fetch, parse, dedupe, match, score, store.

`poll_sources` runs many sources concurrently over one shared `Fetcher`; everything after the
fetch (lookup of known items, matching, scoring, the save) runs without yielding to the event
loop, so two sources never race on the same story, unless another process holds the database's
write lock: the save then waits for it on the loop (`Store.writing`), and rechecks inside its
transaction what it took for new. No write transaction spans a network wait. One broken source
is recorded on that source and the rest go on.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .alerts.rules import Alerting, PollOutcome, evaluate
from .fetch import Fetcher, current_budget, poll_budget
from .models import Brand, Item, Mention, SourcePoll, SourceSpec
from .sources import PollContext, StreamContext, get_kind
from .store import KnownItem, ProcessedItem, Store, iso

if TYPE_CHECKING:  # the CPU side is imported when there is something to parse or score
    from .analyse import Analysis, Identity
    from .match import Matcher
    from .sentiment import Scorer
    from .workers import CpuPool

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    """What a poll needs, built once per process and injected (tests control each part)."""

    store: Store
    fetcher: Fetcher
    matcher_factory: Callable[[], Matcher]
    # The scorer is built on first use: compiling its phrase lexicon takes about a second, which
    # a poll where nothing changed never needs to spend.
    scorer_factory: Callable[[], Scorer]
    now: Callable[[], datetime] = utc_now
    alerting: Alerting | None = None  # None: no rules run (e.g. a one-off poll without alerts)
    cpu: CpuPool | None = None  # worker processes for parsing and scoring; None: inline
    # The configured brands: whose `accounts:` are the brands' own voices (`mentions.by_brand`).
    brands: tuple[Brand, ...] = ()
    _scorer: Scorer | None = field(default=None, init=False, repr=False)
    _matcher: Matcher | None = field(default=None, init=False, repr=False)
    _accounts: dict[str, str] | None = field(default=None, init=False, repr=False)

    @property
    def accounts(self) -> dict[str, str]:
        """The brands' own accounts, as `listener.analyse.author_brand` looks them up."""
        if self._accounts is None:
            from .analyse import brand_accounts

            self._accounts = brand_accounts(self.brands)
        return self._accounts

    @property
    def matcher(self) -> Matcher:
        if self._matcher is None:
            log.debug("building the matcher in this process")
            self._matcher = self.matcher_factory()
        return self._matcher

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            log.debug("building the scorer in this process")
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
    # (url, error) of each fetch that got no HTTP answer at all (DNS, connect, TLS, timeout)
    unanswered: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class PollSummary:
    reports: list[SourceReport] = field(default_factory=list)
    # New mentions by label of reports kept without their mentions (see `poll_sources`).
    dropped_labels: dict[str, int] = field(default_factory=dict)

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
        for label, n in self.dropped_labels.items():
            out[label] = out.get(label, 0) + n
        for r in self.reports:
            for m in r.new_mentions:
                out[m.score.label] += 1
        return out


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


Analysed = list[tuple["Identity", "Analysis | None"]]


def process_items(
    items: Sequence[Item],
    rt: Runtime,
    *,
    analysed: Analysed | None = None,
    context_threads: set[str] | None = None,
) -> list[ProcessedItem]:
    """Dedupe against the store; keep the analysis (matches, scores) of what is new or edited.

    `analysed` is what a worker process already worked out (see `listener.analyse`); what it
    left out, and everything when it is None, is analysed here, for the items that need it only.
    A reply that does not name a brand is kept and scored as context when its conversation is
    about a brand: known from the store, or named by any item of this batch (a reply can come
    before its root). A reply stored earlier as irrelevant is taken up again once its thread
    becomes a brand thread. A post by one of a brand's `accounts:` is marked as the brand's own
    voice (`by_brand`), whether it names the brand or only sits in its thread.
    """
    if not items:
        return []
    from .analyse import analyse_items, author_brand, brand_voice, identify, score_matches

    identities = [a[0] for a in analysed] if analysed else [identify(it) for it in items]
    analyses: list[Analysis | None] = [a[1] for a in analysed] if analysed else [None] * len(items)
    known = rt.store.lookup_keys([k for ident in identities for k in ident.keys])
    brand_threads = rt.store.brand_threads(it.thread_key for it in items)
    if context_threads:
        brand_threads |= context_threads
    for item, analysis in zip(items, analyses, strict=True):
        if analysis is not None and analysis.mentions and item.thread_key:
            brand_threads.add(item.thread_key)

    out: list[ProcessedItem | None] = []
    need: list[int] = []
    founds: list[KnownItem | None] = []
    for index, (item, ident) in enumerate(zip(items, identities, strict=True)):
        found, same_entry = _matched_known(item, ident.keys, known)
        founds.append(found)
        if found is not None and (found.content_hash == ident.content_hash or not same_entry):
            newly_context = not found.relevant and item.thread_key in brand_threads
            if not newly_context:
                out.append(
                    ProcessedItem(
                        item,
                        ident.keys,
                        ident.content_hash,
                        ident.fingerprint,
                        found,
                        False,
                        found.relevant,
                        None,
                        (),
                        by_brand=author_brand(item.author, rt.accounts),
                    )
                )
                continue
        out.append(None)
        need.append(index)

    missing = [i for i in need if analyses[i] is None]
    if missing:
        inline = analyse_items(
            [items[i] for i in missing],
            rt.matcher,
            rt.scorer,
            brand_threads=brand_threads,
            identities=[identities[i] for i in missing],
        )
        for i, (_, analysis) in zip(missing, inline, strict=True):
            analyses[i] = analysis
            if analysis is not None and analysis.mentions and items[i].thread_key:
                brand_threads.add(items[i].thread_key)

    for i in need:
        item, ident, analysis = items[i], identities[i], analyses[i]
        assert analysis is not None  # every needed item was analysed above
        in_thread = bool(item.thread_key) and item.thread_key in brand_threads
        if not analysis.mentions and analysis.item_score is None and in_thread:
            # Its thread turned out to be about a brand only with what the store knows.
            analysis = score_matches(item, [], rt.matcher, rt.scorer, in_brand_thread=True)
        if analysis.lang:
            item = replace(item, extra={**item.extra, "lang": analysis.lang})
        voice = author_brand(item.author, rt.accounts)
        mentions = tuple(
            Mention(
                item=item,
                brand=ms.match.brand,
                product=ms.match.product,
                terms=ms.match.terms,
                snippet=ms.snippet,
                # The brand's own account: its replies carry no customer intent.
                score=ms.score if voice is None else brand_voice(ms.score),
                item_score=analysis.item_score,
                lexicon_version=analysis.lexicon_version,
            )
            for ms in analysis.mentions
        )
        relevant = bool(mentions) or in_thread
        out[i] = ProcessedItem(
            item,
            ident.keys,
            ident.content_hash,
            ident.fingerprint,
            founds[i],
            True,
            relevant,
            analysis.item_score,
            mentions,
            by_brand=voice,
        )
    return [p for p in out if p is not None]


def next_poll_time(spec: SourceSpec, now: datetime, failures: int) -> datetime:
    """The interval, with jitter so sources spread out, and capped backoff after failures."""
    interval = spec.every_s
    if failures:
        interval = min(interval * 2 ** min(failures, 6), max(spec.every_s, 6 * 3600.0))
    jitter = random.uniform(0, min(0.1 * interval, 60.0))
    return now + timedelta(seconds=interval + jitter)


async def poll_source(spec: SourceSpec, rt: Runtime) -> SourceReport:
    """One poll of `spec`: its requests (every attempt, redirect and thread read) share one time
    budget, `fetch: poll_budget`, so a trickling server costs at most that, not a multiple."""
    with poll_budget(rt.fetcher.limits.poll_budget_s):
        return await _poll_source(spec, rt)


async def _poll_source(spec: SourceSpec, rt: Runtime) -> SourceReport:
    started = time.perf_counter()
    kind = get_kind(spec.kind)
    if kind.stream is not None:  # a websocket, read from its cursor until caught up
        return await read_stream_once(spec, rt)
    state = rt.store.load_source_state(spec.name)
    ctx = PollContext(spec=spec, fetcher=rt.fetcher, state=state, now=rt.now, store=rt.store)
    cpu = rt.cpu
    if cpu is not None:
        ctx = replace(ctx, parse_feed=cpu.parse_feed)
    analysed: Analysed | None = None
    try:
        result = await kind.poll(ctx)
        # The kind's items, as it returns them, are analysed by the workers on a big poll.
        if cpu is not None and len(result.items) >= WORKER_MIN_ITEMS:
            analysed = await cpu.analyse(
                result.items,
                rt.store.seen_hashes(spec.name, rt.now() - SEEN_WINDOW),
                rt.store.brand_threads(it.thread_key for it in result.items),
            )
    except Exception as exc:  # a bug in one kind must not stop the others
        log.exception("%s: poll failed with an internal error", spec.name)
        result = SourcePoll(items=[], responses=[], error=f"internal error: {exc!r}")
    report = await save_result(spec, rt, result, started, analysed=analysed)
    if report.ok and spec.follow_threads and kind.fetch_thread is not None:
        report = await follow_threads(spec, rt, ctx, report)
    return report


async def save_result(
    spec: SourceSpec,
    rt: Runtime,
    result: SourcePoll,
    started: float,
    *,
    context_threads: set[str] | None = None,
    save_state: bool = True,
    analysed: Analysed | None = None,
) -> SourceReport:
    now = rt.now()
    processed: list[ProcessedItem] = []
    error = result.error
    try:
        processed = process_items(
            result.items,
            rt,
            analysed=analysed,
            context_threads=context_threads,
        )
    except Exception as exc:
        log.exception("%s: processing items failed", spec.name)
        error, processed = f"internal error: {exc!r}", []
    failures = rt.store.load_source_state(spec.name).consecutive_failures + 1 if error else 0
    alerts: list[int] = []
    # The mentions and the alerts they cause are committed together, or not at all. The write
    # lock is waited for without blocking the event loop, and held for this block only.
    async with rt.store.writing():
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
            update_source=save_state,
            # A poll that read the feed anew says what it noticed, or clears the old note.
            note=(result.note or "")
            if save_state and not error and not result.not_modified
            else None,
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
        unanswered=tuple((r.url, r.error) for r in result.responses if r.error and not r.status),
    )


# A source poll with fewer items is analysed inline: the round trip to a worker costs more.
WORKER_MIN_ITEMS = 4
# Items a source showed within this window are not analysed again by a worker.
SEEN_WINDOW = timedelta(days=30)
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
    rows = rt.store.followable_threads(spec.name, report.threads_touched, since, FOLLOW_MAX_THREADS)
    extra_items = 0
    mentions = list(report.new_mentions)
    alerts = list(report.alerts)
    for done, (key, replies_url) in enumerate(rows):
        budget = current_budget()
        if budget is not None and budget.exhausted:
            log.warning(
                "%s: %d conversation(s) not re-read this poll: %s",
                spec.name,
                len(rows) - done,
                budget.message(),
            )
            break
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
        sub = await save_result(
            spec,
            rt,
            SourcePoll(items=items, responses=result.responses),
            started,
            context_threads={key},
            save_state=False,
        )
        async with rt.store.writing():
            rt.store.mark_followed(key, rt.now())
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
    group_commits: bool = False,
    keep_mentions: bool = True,
) -> PollSummary:
    """Poll each source once, concurrently; `on_done` is called as each finishes.

    `group_commits`: commit several sources' transactions together (see `Store.grouped`), for
    a one-off poll of many sources. `keep_mentions=False`: the summary keeps each report's new
    mentions as counts by label only (`PollSummary.dropped_labels`), not the mentions and their
    items: a first poll of a thousand feeds would otherwise hold every new mention's text.
    """
    rt.store.ensure_sources(specs)
    if rt.cpu is not None and not rt.cpu.started and _first_reads(specs, rt) >= EARLY_START_SOURCES:
        # A first poll of many sources: every body will be parsed and scored. The workers
        # start now (imports, the scorer's lexicon: ~1 s) while the first bodies are fetched.
        rt.cpu.start()
    summary = PollSummary()
    # Sources in progress at once: the fetch limit, so that downloaded bodies never pile up in
    # memory waiting for the parser (a thousand feeds would otherwise all be held at once).
    in_progress = asyncio.Semaphore(rt.fetcher.limits.concurrency)

    async def one(spec: SourceSpec) -> None:
        async with in_progress:
            report = await poll_source(spec, rt)
        log_report(report)
        if on_done is not None:
            on_done(report)
        if not keep_mentions and report.new_mentions:
            labels = summary.dropped_labels
            for m in report.new_mentions:
                labels[m.score.label] = labels.get(m.score.label, 0) + 1
            report = replace(report, new_mentions=())
        summary.reports.append(report)

    async def all_of_them() -> None:
        tasks = [asyncio.ensure_future(one(s)) for s in specs]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # One failed (the database stayed busy): stop the rest before the store closes.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    if group_commits:
        with rt.store.grouped():
            await all_of_them()
    else:
        await all_of_them()
    return summary


# A poll reading at least this many sources for the first time starts its workers at once.
EARLY_START_SOURCES = 20


def _first_reads(specs: Sequence[SourceSpec], rt: Runtime) -> int:
    """How many of these sources were never read: no validators, no body hash, no cursor."""
    n = 0
    for spec in specs:
        state = rt.store.load_source_state(spec.name)
        v = state.validators
        if not (v.etag or v.last_modified or state.body_hash or state.cursor):
            n += 1
            if n >= EARLY_START_SOURCES:
                break
    return n


def log_report(r: SourceReport) -> None:
    # A poll that found nothing new is the common case of a service (111 a second at 100,000
    # sources every 15 minutes): at info it would flood the journal and cost the daemon a
    # few percent of its CPU. `listener status` shows each source's last poll.
    if r.error:
        log.warning("%s: failed: %s", r.source, r.error)
    elif r.not_modified:
        log.debug("%s: unchanged (%.2f s)", r.source, r.duration_s)
    else:
        log.log(
            logging.INFO if r.new_items or r.updated_items else logging.DEBUG,
            "%s: %d items, %d new, %d updated, %d new mentions (%.2f s)",
            r.source,
            r.items,
            r.new_items,
            r.updated_items,
            len(r.new_mentions),
            r.duration_s,
        )


def stream_context(
    spec: SourceSpec,
    rt: Runtime,
    stop: asyncio.Event,
    deliver: Callable[[SourcePoll], Awaitable[None]],
    until_us: int | None = None,
) -> StreamContext:
    """What a stream kind reads and writes through, for `run` (listener.stream) and `poll`."""
    matcher = rt.matcher
    return StreamContext(
        spec=spec,
        state=rt.store.load_source_state(spec.name),
        now=rt.now,
        user_agent=rt.fetcher.user_agent,
        stop=stop,
        deliver=deliver,
        wants=lambda text: bool(matcher.match(text)),
        brand_threads=rt.store.brand_threads,
        until_us=until_us,
        connect_timeout_s=rt.fetcher.limits.connect_timeout_s,
    )


async def read_stream_once(spec: SourceSpec, rt: Runtime) -> SourceReport:
    """`listener poll` of a stream source: read from its cursor (or the live tip) until caught
    up with the time the poll started, as one report."""
    kind = get_kind(spec.kind)
    assert kind.stream is not None
    started = time.perf_counter()
    reports: list[SourceReport] = []

    async def deliver(batch: SourcePoll) -> None:
        reports.append(await save_result(spec, rt, batch, started))

    until_us = int(rt.now().timestamp() * 1_000_000)
    try:
        await kind.stream(stream_context(spec, rt, asyncio.Event(), deliver, until_us=until_us))
    except Exception as exc:
        log.exception("%s: reading the stream failed with an internal error", spec.name)
        return await save_result(
            spec, rt, SourcePoll(items=[], responses=[], error=f"internal error: {exc!r}"), started
        )
    if not reports:
        return await save_result(spec, rt, SourcePoll(items=[], responses=[]), started)
    last = reports[-1]
    return replace(
        last,
        error=next((r.error for r in reversed(reports) if r.error), None),
        items=sum(r.items for r in reports),
        new_items=sum(r.new_items for r in reports),
        updated_items=sum(r.updated_items for r in reports),
        new_mentions=tuple(m for r in reports for m in r.new_mentions),
        threads_touched=tuple(dict.fromkeys(t for r in reports for t in r.threads_touched)),
        alerts=tuple(a for r in reports for a in r.alerts),
        duration_s=time.perf_counter() - started,
    )
