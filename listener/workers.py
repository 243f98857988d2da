"""Worker processes for the CPU side of a big poll: parsing feeds, matching and scoring items.

A poll of many sources is CPU-bound in Python (feed parsing, VADER), and one process uses one
core. `CpuPool` runs the pure parts (`listener.parse.parse_feed`, `listener.analyse.analyse_items`)
in worker processes, each with its own matcher and scorer built once, while the polling process
keeps the network, the database and the decisions. With no workers, the same functions run
inline: results are the same either way.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # imported by the workers themselves: the polling process may never need them
    from .analyse import Analysis, Identity
    from .match import Matcher
    from .models import Brand, Item
    from .parse import ParsedFeed
    from .sentiment import Scorer

log = logging.getLogger(__name__)
T = TypeVar("T")


_matcher: Matcher | None = None
_scorer: Scorer | None = None


def _init_worker(brands: Sequence[Brand], sentiment: dict[str, Any]) -> None:
    global _matcher, _scorer
    # Ctrl-C in a terminal reaches the whole process group: the parent decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .match import Matcher
    from .sentiment import Scorer, SentimentConfig

    _matcher = Matcher.from_brands(brands)
    _scorer = Scorer(SentimentConfig(**sentiment))


def _ready() -> int:
    return os.getpid()


def _parse(body: bytes, kwargs: dict[str, Any], skip_hashes: Collection[str] | None) -> ParsedFeed:
    from .parse import parse_feed

    parsed = parse_feed(body, **kwargs)
    if skip_hashes is None or not parsed.items:
        return parsed
    # Analysed here too, in the same round trip: sending the items back to a worker to be
    # analysed would pickle them twice more.
    return replace(parsed, analysed=_analyse(parsed.items, skip_hashes, ()))


def _analyse(
    items: Sequence[Item], skip_hashes: Collection[str], brand_threads: Collection[str]
) -> list[tuple[Identity, Analysis | None]]:
    assert _matcher is not None and _scorer is not None, "worker not initialised"
    from .analyse import analyse_items

    return analyse_items(
        items, _matcher, _scorer, skip_hashes=skip_hashes, brand_threads=brand_threads
    )


class CpuPool:
    """Worker processes with a matcher and a scorer each; `async` methods for the event loop.

    The processes start on first use: a poll where every feed answers 304 never pays for them.
    If a worker dies (killed, out of memory), the pool is not restarted: the rest of the poll
    runs inline, and says so once in the log.
    """

    def __init__(
        self,
        workers: int,
        brands: Sequence[Brand],
        sentiment: Mapping[str, Any],  # keyword arguments of `SentimentConfig`
        *,
        analyse_inline: Callable[
            [Sequence[Item], Collection[str], Collection[str]],
            list[tuple[Identity, Analysis | None]],
        ],
    ) -> None:
        self.workers = workers
        self._initargs = (tuple(brands), dict(sentiment))
        self._pool: ProcessPoolExecutor | None = None
        self._analyse_inline = analyse_inline
        self.broken = False

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # "spawn": a fresh interpreter, never a fork of a process with an event loop and
            # threads.
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=self._initargs,
            )
            for _ in range(self.workers):  # start them all now, not one per queued job
                self._pool.submit(_ready)
            log.debug("started %d worker processes", self.workers)
        return self._pool

    async def _run(self, fn: Callable[..., T], *args: Any) -> T | None:
        """`fn(*args)` in a worker; None when the pool is broken (the caller runs it inline)."""
        if self.broken:
            return None
        loop = asyncio.get_running_loop()
        try:
            executor = self._executor()
        except (OSError, RuntimeError) as exc:
            # No processes to be had: out of PIDs or memory, or spawned from a script without
            # the `if __name__ == "__main__":` guard that "spawn" needs.
            self.broken = True
            log.warning("could not start worker processes (%s); working in this process", exc)
            return None
        try:
            return await loop.run_in_executor(executor, fn, *args)
        except BrokenProcessPool:
            if not self.broken:
                self.broken = True
                log.warning("a worker process died; parsing and scoring go on in this process")
            return None

    async def parse_feed(
        self, body: bytes, *, analyse_skip: Collection[str] | None = None, **kwargs: Any
    ) -> ParsedFeed:
        """`parse_feed(body, **kwargs)` in a worker. With `analyse_skip` (content hashes not to
        analyse again), the items are analysed there too: see `ParsedFeed.analysed`."""
        skip = frozenset(analyse_skip) if analyse_skip is not None else None
        parsed = await self._run(_parse, body, kwargs, skip)
        if parsed is None:
            from .parse import parse_feed

            parsed = parse_feed(body, **kwargs)
        return parsed

    async def analyse(
        self, items: Sequence[Item], skip_hashes: Collection[str], brand_threads: Collection[str]
    ) -> list[tuple[Identity, Analysis | None]]:
        out = await self._run(
            _analyse, list(items), frozenset(skip_hashes), frozenset(brand_threads)
        )
        if out is None:
            out = self._analyse_inline(items, skip_hashes, brand_threads)
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
