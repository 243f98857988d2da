"""Stream sources (`kind: jetstream`): read continuously, filtered here, saved in batches.

A stream kind reads its websocket and hands over batches (`SourcePoll`s with a cursor); each
batch goes through the same steps as a poll (`pipeline.save_result`: dedupe, match, score, store,
alert rules) in one transaction with its cursor, so the stored cursor never runs ahead of the
stored items. `listener run` keeps each stream open until it is told to stop; `listener poll`
reads one from its cursor until it has caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from .models import SourcePoll, SourceSpec
from .pipeline import Runtime, SourceReport, log_report, save_result
from .sources import StreamContext, get_kind

log = logging.getLogger(__name__)

# After a crash of the stream's own code (not a lost connection: the kind retries those), the
# stream is started again after this long.
RESTART_AFTER_S = 10.0


def is_stream(spec: SourceSpec) -> bool:
    return get_kind(spec.kind).stream is not None


def _context(
    spec: SourceSpec,
    rt: Runtime,
    stop: asyncio.Event,
    deliver: Callable[[SourcePoll], Awaitable[None]],
    until_us: int | None = None,
) -> StreamContext:
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


async def run_stream(
    spec: SourceSpec,
    rt: Runtime,
    stop: asyncio.Event,
    *,
    on_saved: Callable[[SourceReport], Awaitable[None]] | None = None,
    restart_after_s: float = RESTART_AFTER_S,
) -> None:
    """Read `spec`'s stream until `stop` is set; `on_saved` after each committed batch."""
    kind = get_kind(spec.kind)
    assert kind.stream is not None

    async def deliver(batch: SourcePoll) -> None:
        report = await save_result(spec, rt, batch, time.perf_counter())
        if report.error or report.new_items or report.alerts:
            log_report(report)
        if on_saved is not None:
            await on_saved(report)

    while not stop.is_set():
        try:
            await kind.stream(_context(spec, rt, stop, deliver))
        except Exception:
            log.exception("%s: the stream crashed; starting it again", spec.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), restart_after_s)


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
        await kind.stream(_context(spec, rt, asyncio.Event(), deliver, until_us=until_us))
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
