"""Stream sources (`kind: jetstream`): read continuously, filtered here, saved in batches.

A stream kind reads its websocket and hands over batches (`SourcePoll`s with a cursor); each
batch goes through the same steps as a poll (`pipeline.save_result`: dedupe, match, score, store,
alert rules) in one transaction with its cursor, so the stored cursor never runs ahead of the
stored items. `listener run` keeps each stream open until it is told to stop (here); `listener
poll` reads one from its cursor until it has caught up (`pipeline.read_stream_once`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from .models import SourcePoll, SourceSpec
from .pipeline import Runtime, SourceReport, log_report, save_result, stream_context
from .sources import get_kind

log = logging.getLogger(__name__)

# After a crash of the stream's own code (not a lost connection: the kind retries those), the
# stream is started again after this long.
RESTART_AFTER_S = 10.0


def is_stream(spec: SourceSpec) -> bool:
    return get_kind(spec.kind).stream is not None


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
            await kind.stream(stream_context(spec, rt, stop, deliver))
        except Exception:
            log.exception("%s: the stream crashed; starting it again", spec.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), restart_after_s)
