"""Build, once per process, the parts a poll needs from a validated config."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

from .alerts.rules import Alerting
from .config import Config
from .fetch import AddressGuard, Fetcher
from .pipeline import Runtime, utc_now
from .secrets import masked_in_logs
from .sources.base import options_dict
from .store import Store

if TYPE_CHECKING:
    from .analyse import Analysis, Identity
    from .match import Matcher
    from .models import Item
    from .sentiment import Scorer
    from .workers import CpuPool


def sentiment_settings(config: Config) -> dict[str, Any]:
    """The `sentiment:` block as plain keyword arguments of `SentimentConfig`, for a worker
    process (its read-only mappings do not pickle)."""
    s = config.sentiment
    return {
        "positive_threshold": s.positive_threshold,
        "negative_threshold": s.negative_threshold,
        "lexicon": dict(s.lexicon),
        "phrases": dict(s.phrases),
        "domain_lexicon": s.domain_lexicon,
    }


def build_matcher(config: Config) -> Matcher:
    from .match import Matcher

    return Matcher.from_brands(config.brands)


def build_scorer(config: Config) -> Scorer:
    from .sentiment import Scorer

    return Scorer(config.sentiment)


def build_alerting(config: Config) -> Alerting:
    return Alerting(
        rules=config.alerts.rules,
        channels=tuple(c.name for c in config.alerts.channels),
        influential_sources=frozenset(s.name for s in config.sources if s.influential),
        serve_url=config.serve_url,
        answering_brands=frozenset(b.name for b in config.brands if b.accounts),
    )


def config_urls(config: Config) -> Iterator[str]:
    """Every URL the config gives its sources: `url:`, `base_url:`, `instances:`, ..."""

    def found(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            if "://" in value:
                yield value.strip()
        elif isinstance(value, list | tuple):
            for v in value:
                yield from found(v)
        elif isinstance(value, dict):
            for v in value.values():
                yield from found(v)

    for spec in config.sources:
        if spec.url:
            yield spec.url
        yield from found(options_dict(spec.options))
    # Alert channels post through the same client: a webhook on this machine is the config's too.
    for channel in config.alerts.channels:
        if dataclasses.is_dataclass(channel):
            yield from found([getattr(channel, f.name) for f in dataclasses.fields(channel)])


@asynccontextmanager
async def channel_client(config: Config) -> AsyncIterator[httpx.AsyncClient]:
    """The process's one HTTP client for a command that only sends alerts (`alerts test`,
    `alerts flush`): a `Fetcher` as a poll would open it, lending its `http`."""
    async with Fetcher(
        config.fetch,
        user_agent=config.user_agent,
        transport=config.transport,
        guard=address_guard(config),
    ) as fetcher:
        yield fetcher.http


def address_guard(config: Config) -> AddressGuard:
    """Where requests may go: the public internet, and the internal addresses (loopback,
    private, link-local...) that the config's own sources live at, nothing else."""
    return AddressGuard(config_urls(config))


@asynccontextmanager
async def open_runtime(
    config: Config,
    *,
    store: Store | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    now: Callable[[], datetime] = utc_now,
    workers: int = 0,
    worker_min_bytes: int = 0,
) -> AsyncIterator[Runtime]:
    """Everything a poll needs; `workers` > 0 starts that many processes for parsing and scoring
    (once a poll has `worker_min_bytes` to work on, or is about to: see `CpuPool`)."""
    own_store = store is None
    store = store or Store.open(config.database)
    store.secrets = config.secrets
    fetcher = Fetcher(
        config.fetch,
        user_agent=config.user_agent,
        transport=transport if transport is not None else config.transport,
        guard=address_guard(config),
    )
    cpu: CpuPool | None = None
    try:
        # Logs mask this config's secrets while it runs (not after: tests load many configs).
        async with fetcher, masked_in_logs(config.secrets):
            rt = Runtime(
                store=store,
                fetcher=fetcher,
                matcher_factory=lambda: build_matcher(config),
                scorer_factory=lambda: build_scorer(config),
                now=now,
                alerting=build_alerting(config),
                brands=config.brands,
            )
            if workers > 0:
                from .workers import CpuPool

                def analyse_inline(
                    items: Sequence[Item], skip: Collection[str], threads: Collection[str]
                ) -> list[tuple[Identity, Analysis | None]]:
                    from .analyse import analyse_items

                    return analyse_items(
                        items, rt.matcher, rt.scorer, skip_hashes=skip, brand_threads=threads
                    )

                cpu = rt.cpu = CpuPool(
                    workers,
                    config.brands,
                    sentiment_settings(config),
                    analyse_inline=analyse_inline,
                    min_bytes=worker_min_bytes,
                )
            yield rt
    finally:
        if cpu is not None:
            cpu.close()
        if own_store:
            store.close()


# Below this many sources a poll gains nothing from workers: starting them costs ~2 s of CPU.
AUTO_MIN_SOURCES = 50
# Workers chosen automatically start once a poll has this much to parse and score: bodies to
# parse plus the text of items to analyse, which a body's items count a second time (or at its
# start when it polls many sources for the first time: see `pipeline.EARLY_START_SOURCES`).
# Below it, inline costs less than starting them: a poll where some feeds changed re-reads
# whole feeds for a few new entries. Measured on farm feeds: parsing ~40 ms of CPU per MB (0.1 ms
# an entry), the scorer 0.4 s to build; a worker ~1 s to start (interpreter, imports, its own
# scorer). 12 MB is ~0.5 s inline; the farm's mutate cycle (50 changed feeds: 5.8 MB of bodies,
# ~3.8 MB of text) stays inline, where two workers would spend ~2 s starting.
AUTO_MIN_BYTES = 12_000_000


def auto_workers(sources: int, configured: int | None) -> int:
    """Workers to start: as configured, else one per core when the poll is big enough."""
    if configured is not None:
        return configured
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cores or 1) if sources >= AUTO_MIN_SOURCES and (cores or 1) > 1 else 0


def auto_min_bytes(configured: int | None) -> int:
    """Bytes a poll works on inline before its workers start: none when `workers:` is set."""
    return AUTO_MIN_BYTES if configured is None else 0
