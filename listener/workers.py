"""Worker processes for the CPU side of a big poll: parsing feeds, matching and scoring items.

A poll of many sources is CPU-bound in Python (feed parsing, VADER), and one process uses one
core. `CpuPool` runs the pure parts (`listener.parse.parse_feed`, `listener.analyse.analyse_items`)
in worker processes, each with its own matcher and scorer built once, while the polling process
keeps the network, the database and the decisions. With no workers, the same functions run
inline: results are the same either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import os
import signal
import sys
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
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


# prctl(2) option: the signal this process gets when the thread that started it ends.
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int | None, pdeathsig: bool) -> None:
    """Exit as soon as the polling process is gone, however it went (kill -9 included).

    A worker otherwise waits on its job queue for ever: the queue's pipe stays open in the
    worker itself, so it never sees end-of-file. The watch: "spawn" hands each child one end of a
    pipe whose other end only the parent holds (`parent_process().sentinel`; "forkserver" does
    the same); it becomes readable when the parent dies, and a daemon thread exits the worker
    then. The belt, on Linux: PR_SET_PDEATHSIG, which the kernel delivers even when the worker is
    busy in C code holding the GIL, but which fires when the *thread* that started the worker
    ends, so it is only asked for when that thread was a main thread (the fork server's is; it
    exits when the polling process is gone). `parent_pid`: the polling process when it started
    the worker itself ("spawn"); None when a fork server did.
    """
    if pdeathsig and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl here: the watch below is enough
            pass
    if parent_pid is not None and os.getppid() != parent_pid:  # it died before either was in place
        os._exit(1)
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch(sentinel: int) -> None:
        multiprocessing.connection.wait([sentinel])
        os._exit(1)

    threading.Thread(
        target=watch, args=(parent.sentinel,), name="parent-watch", daemon=True
    ).start()


def _init_worker(
    brands: Sequence[Brand], sentiment: dict[str, Any], parent_pid: int | None, pdeathsig: bool
) -> None:
    global _matcher, _scorer
    # Ctrl-C in a terminal reaches the whole process group: the parent decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid, pdeathsig)
    from .match import Matcher
    from .sentiment import Scorer, SentimentConfig

    _matcher = Matcher.from_brands(brands)
    _scorer = Scorer(SentimentConfig(**sentiment))


def _ready() -> int:
    return os.getpid()


def _parse(body: bytes, kwargs: dict[str, Any]) -> ParsedFeed:
    from .parse import parse_feed

    return parse_feed(body, **kwargs)


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

    The processes start on first use, or earlier with `start()` (a poll that will need them
    starts them while the first bodies are still on their way). With `min_bytes`, the first
    bodies and items up to that size are worked on inline: a poll that changed little (a few
    feeds) never pays for starting them (the fork server's imports and lexicon, ~1 s of CPU,
    then ~0.1 s per worker). A poll where every feed answers 304 never pays for them either.
    If a worker dies (killed, out of memory), the pool is not restarted: the rest of the poll
    runs inline, and says so once in the log. If the polling process dies, even by kill -9, its
    workers exit at once (see `_die_with_parent`).
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
        min_bytes: int = 0,
    ) -> None:
        self.workers = workers
        self._initargs = (tuple(brands), dict(sentiment))
        self._pool: ProcessPoolExecutor | None = None
        self._fork_server = False  # the workers were forked by a fork server (see `close`)
        self._analyse_inline = analyse_inline
        self.broken = False
        self.min_bytes = min_bytes
        self._inline_bytes = 0  # worked on inline so far, while below `min_bytes`

    @property
    def started(self) -> bool:
        return self._pool is not None

    def start(self) -> bool:
        """Start the worker processes now, if not yet; False when they cannot be had."""
        if self._pool is None and not self.broken:
            try:
                self._executor()
            except (OSError, RuntimeError) as exc:
                self.broken = True
                log.warning("could not start worker processes (%s); working in this process", exc)
        return self._pool is not None

    def _worth_starting(self, size: int) -> bool:
        """Whether work of `size` bytes goes to the workers (else: inline, below the threshold)."""
        if self._pool is not None:
            return True
        self._inline_bytes += size
        if self._inline_bytes < self.min_bytes:
            return False
        log.debug("%d bytes to work on this poll: starting the workers", self._inline_bytes)
        return True

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # Never a fork of this process, which has an event loop and threads: each worker is
            # forked from a fork server that imported listener and compiled the lexicon once
            # (`listener.worker_preload`), or, where there is none, spawned as a fresh
            # interpreter. The processes all start below, from this thread (see
            # `_die_with_parent`).
            context, forked = _worker_context()
            on_main_thread = threading.current_thread() is threading.main_thread()
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(
                    *self._initargs,
                    None if forked else os.getpid(),
                    forked or on_main_thread,
                ),
            )
            self._fork_server = forked
            for _ in range(self.workers):  # start them all now, not one per queued job
                self._pool.submit(_ready)
            log.debug("started %d worker processes", self.workers)
        return self._pool

    async def _run(self, size: int, fn: Callable[..., T], *args: Any) -> T | None:
        """`fn(*args)` in a worker; None when the pool is broken or the work is too small yet
        to start it (`min_bytes`): the caller runs it inline."""
        if self.broken or not self._worth_starting(size):
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

    async def parse_feed(self, body: bytes, **kwargs: Any) -> ParsedFeed:
        """`parse_feed(body, **kwargs)` in a worker."""
        parsed = await self._run(len(body), _parse, body, kwargs)
        if parsed is None:
            from .parse import parse_feed

            parsed = parse_feed(body, **kwargs)
        return parsed

    async def analyse(
        self, items: Sequence[Item], skip_hashes: Collection[str], brand_threads: Collection[str]
    ) -> list[tuple[Identity, Analysis | None]]:
        size = sum(len(it.text) for it in items)
        out = await self._run(
            size, _analyse, list(items), frozenset(skip_hashes), frozenset(brand_threads)
        )
        if out is None:
            out = self._analyse_inline(items, skip_hashes, brand_threads)
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            if self._fork_server:
                _stop_fork_server()


def _worker_context() -> tuple[multiprocessing.context.BaseContext, bool]:
    """The start method for workers, and whether it forks them from a fork server."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # Only read when the server starts (once per process, or again after a stop).
        context.set_forkserver_preload(["listener.worker_preload"])
        return context, True
    return multiprocessing.get_context("spawn"), False


def _stop_fork_server() -> None:
    """Stop and reap the fork server. The standard library leaves it running until this process
    exits, and never waits for it: its CPU would not count in this process's (wait4, `time`),
    and a long-lived embedding process would keep it for nothing. Its stop is not public API,
    hence the care; without it the server still exits with this process."""
    from multiprocessing import forkserver

    stop = getattr(getattr(forkserver, "_forkserver", None), "_stop", None)
    if callable(stop):
        with contextlib.suppress(OSError):
            stop()
