"""`listener run`: the service. Polls each source on its own schedule until told to stop.

APScheduler (3.x, asyncio) runs one job per source. After each poll the job is scheduled again at
the source's `next_poll_at`, which the pipeline computes from its interval, with jitter, and with a
capped backoff after failures; so two polls of one source never overlap, and a restart resumes
each source where the database says it was due (overdue sources poll at once). The outbox is
flushed after every poll that fired alerts and on a short interval for retries and digests.
The fetch log is trimmed at start and every 10 minutes, as `retention:` says.
One instance per database: a lock file next to it. SIGTERM/SIGINT stop new polls, let in-flight
ones finish their writes (or cancels their network waits after a grace period) and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

import httpx
from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

from .alerts.channels import Channel, SlackRateLimiter
from .alerts.outbox import Backoff, deliver_pending, recover_interrupted
from .models import Retention, SourceSpec
from .pipeline import Runtime, SourceReport, log_report, poll_source
from .store import DatabaseBusy, iso
from .stream import is_stream, run_stream
from .units import format_duration

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 15.0
STOP_GRACE_S = 5.0
# The fetch log is trimmed at start and then this often (see `retention:` in sources.yaml).
PRUNE_EVERY_S = 600.0


class AlreadyRunning(Exception):
    pass


@contextlib.contextmanager
def instance_lock(database: Path) -> Iterator[IO[str]]:
    """Hold an exclusive lock for this database, or raise AlreadyRunning naming the holder."""
    path = database.with_name(database.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - held for the life of the service
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise AlreadyRunning(
            f"another `listener run` (pid {holder}) is already using {database}; stop it first"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield handle
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def running_pid(database: Path) -> str | None:
    """The pid of the `listener run` holding this database's instance lock ("unknown" if it
    did not write one), or None when no service runs on it."""
    path = database.with_name(database.name + ".lock")
    try:
        handle = open(path)  # noqa: SIM115 - closed below
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "unknown"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


# Where a source's job waits while its poll runs: the poll's end sets the real next time.
_PARKED = timedelta(days=3650)


class _WhenTold(BaseTrigger):  # type: ignore[misc]
    """A source's next poll is when the daemon says: once its job fires, it parks far ahead,
    and the end of the poll moves it to the source's next poll time. One job per source for
    the life of the service: a poll costs APScheduler a move, not a new job (building one
    inspects the callable's signature, ~0.1 ms, 100 times a second at 100,000 sources)."""

    __slots__ = ()

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        return now + _PARKED


class Service:
    def __init__(
        self,
        rt: Runtime,
        specs: list[SourceSpec],
        channels: dict[str, Channel],
        *,
        flush_every_s: float = FLUSH_EVERY_S,
        stop_grace_s: float = STOP_GRACE_S,
        backoff: Backoff | None = None,
        retention: Retention | None = None,
        prune_every_s: float = PRUNE_EVERY_S,
    ) -> None:
        self.backoff = backoff or Backoff()
        self.retention = retention or Retention()
        self.prune_every_s = prune_every_s
        self.rt = rt
        self.specs = {s.name: s for s in specs}
        self.channels = channels
        self.flush_every_s = flush_every_s
        self.stop_grace_s = stop_grace_s
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flush_lock = asyncio.Lock()
        self._scheduler: AsyncIOScheduler | None = None
        self._jobs: dict[str, Job] = {}  # one per polled source, for the life of the service
        self._http: httpx.AsyncClient | None = None
        self._limiter = SlackRateLimiter()
        self._pruning = False
        self._flush_wanted = False
        self._flusher: asyncio.Task[None] | None = None

    def stop(self) -> None:
        if not self._stop.is_set():
            log.info("stopping: finishing in-flight polls")
            self._stop.set()

    def _due(self, name: str, now: datetime) -> datetime:
        due = self.rt.store.next_poll_at(name)
        return max(due or now, now)

    def _schedule(self, name: str, when: datetime | None = None) -> None:
        if self._stop.is_set() or self._scheduler is None:
            return
        when = when or self._due(name, self.rt.now())
        job = self._jobs.get(name)
        if job is not None:
            job.modify(next_run_time=when)
            return
        self._jobs[name] = self._scheduler.add_job(
            self._start_poll,
            _WhenTold(),
            next_run_time=when,
            args=[name],
            id=f"poll:{name}",
            replace_existing=True,
            misfire_grace_time=None,
        )

    async def _start_poll(self, name: str) -> None:
        # A coroutine job, so APScheduler runs it on the event loop, not in a worker thread.
        if self._stop.is_set():
            return
        task = asyncio.get_running_loop().create_task(self._poll(name), name=f"poll:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _poll(self, name: str) -> None:
        spec = self.specs[name]
        when: datetime | None = None
        try:
            report = await poll_source(spec, self.rt)
            log_report(report)
            if report.alerts:
                self._flush_soon()
        except DatabaseBusy as exc:
            # Another process kept the write lock (not another listener: they hold it briefly).
            # Nothing of this poll was saved; its source is polled again after its interval.
            when = self.rt.now() + timedelta(seconds=spec.every_s)
            log.warning("%s: %s; not saved, polled again at %s", name, exc, iso(when))
        except Exception:
            # A bug in one poll is logged with its traceback; the service goes on.
            log.exception("%s: poll crashed; it will be retried on schedule", name)
            when = self.rt.now() + timedelta(seconds=spec.every_s)
            try:
                async with self.rt.store.writing():
                    self.rt.store.set_next_poll(name, when)
            except Exception:
                log.exception("%s: could not record the next poll", name)
        finally:
            self._schedule(name, when)

    async def _start_prune(self) -> None:
        if self._stop.is_set() or self._pruning:
            return
        task = asyncio.get_running_loop().create_task(self.prune(), name="prune")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def prune(self) -> None:
        """Trim the fetch log as `retention:` says, in small batches between polls."""
        r = self.retention
        self._pruning = True
        try:
            deleted = await self.rt.store.prune_fetches(
                self.rt.now(), max_age_s=r.fetches, per_source=r.fetches_per_source
            )
        except DatabaseBusy as exc:
            log.warning("fetch log not trimmed this time: %s", exc)
            return
        except Exception:
            log.exception("trimming the fetch log failed; will try again")
            return
        finally:
            self._pruning = False
        if deleted:
            limits = [f"older than {format_duration(r.fetches)}"] if r.fetches else []
            if r.fetches_per_source:
                limits.append(f"past a source's newest {r.fetches_per_source}")
            log.info("fetch log: %d rows deleted (%s)", deleted, ", or ".join(limits))

    def _start_stream(self, spec: SourceSpec) -> None:
        """A stream source (websocket) is read continuously, not polled on a schedule; alerts its
        batches fire are delivered at once."""

        async def saved(report: SourceReport) -> None:
            if report.alerts:
                self._flush_soon()

        task = asyncio.get_running_loop().create_task(
            run_stream(spec, self.rt, self._stop, on_saved=saved), name=f"stream:{spec.name}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _flush_soon(self) -> None:
        """Deliver just-queued alerts now, in a task of their own (a stream keeps reading)."""
        self._flush_wanted = True
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_wanted_alerts())
            self._tasks.add(self._flusher)  # a stop lets it finish, like a poll
            self._flusher.add_done_callback(self._tasks.discard)

    async def _flush_wanted_alerts(self) -> None:
        # A flush already under way may have read the outbox before these alerts were queued:
        # wait for it, then flush again, until nothing more was queued meanwhile.
        while self._flush_wanted and not self._stop.is_set():
            self._flush_wanted = False
            while self._flush_lock.locked():
                await asyncio.sleep(0.05)
            await self.flush()

    async def flush(self) -> None:
        if not self.channels or self._http is None or self._flush_lock.locked():
            return  # a flush is already under way; it picks up what is due
        async with self._flush_lock:
            try:
                report = await deliver_pending(
                    self.rt.store,
                    self.channels,
                    http=self._http,
                    now=self.rt.now,
                    limiter=self._limiter,
                    backoff=self.backoff,
                    user_agent=self.rt.fetcher.user_agent,
                )
            except Exception:
                log.exception("delivering alerts failed; will retry")
                return
        if report.sent or report.retrying or report.failed:
            log.info(
                "alerts: %d sent, %d to retry, %d failed",
                report.sent,
                report.retrying,
                report.failed,
            )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        self.rt.store.ensure_sources(self.specs.values())
        # The only `run` on this database: a send still marked in flight was cut off by a crash.
        recover_interrupted(self.rt.store, self.rt.now(), everything=True)
        self._scheduler = AsyncIOScheduler(timezone="UTC", event_loop=loop)
        # Polls' saves are committed together every quarter second, not one commit each (at
        # 100,000 sources per 15 minutes, BEGIN and COMMIT were about a tenth of the event
        # loop's CPU samples); an alert is committed before it is sent
        # (`transaction(durable=True)` in the outbox).
        # Channels post through the fetcher's client: one HTTP client for sources and channels.
        with self.rt.store.grouped():
            await self._serve(loop)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        log.info("stopped")

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._scheduler is not None
        async with contextlib.nullcontext(self.rt.fetcher.http) as http:
            self._http = http
            for name, spec in self.specs.items():
                if is_stream(spec):
                    self._start_stream(spec)
                else:
                    self._schedule(name)
            if self.channels:
                self._scheduler.add_job(
                    self.flush,
                    "interval",
                    seconds=self.flush_every_s,
                    id="outbox",
                    max_instances=2,
                    coalesce=True,
                    next_run_time=self.rt.now(),
                )
            if self.retention.fetches or self.retention.fetches_per_source:
                self._scheduler.add_job(
                    self._start_prune,
                    "interval",
                    seconds=self.prune_every_s,
                    id="prune",
                    coalesce=True,
                    next_run_time=self.rt.now(),
                )
            self._scheduler.start()
            log.info(
                "listening: %d sources, %d alert channels", len(self.specs), len(self.channels)
            )
            await self._stop.wait()
            self._scheduler.shutdown(wait=False)
            if self._tasks:
                _, pending = await asyncio.wait(set(self._tasks), timeout=self.stop_grace_s)
                for task in pending:
                    # Only network waits can be cancelled: each save is one synchronous
                    # transaction, so nothing half-written is left behind.
                    task.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush(), timeout=self.stop_grace_s)
