"""Build, once per process, the parts a poll needs from a validated config."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

import httpx

from .alerts.rules import Alerting
from .analyse import analyse_items
from .config import Config
from .fetch import Fetcher
from .match import Matcher
from .pipeline import Runtime, utc_now
from .sentiment import Scorer, SentimentConfig, lexicon_version
from .store import Store
from .workers import CpuPool


def sentiment_config(config: Config) -> SentimentConfig:
    s = config.sentiment
    return SentimentConfig(
        positive_threshold=s.positive_threshold,
        negative_threshold=s.negative_threshold,
        lexicon=dict(s.lexicon),
        phrases=dict(s.phrases),
        domain_lexicon=s.domain_lexicon,
    )


def build_scorer(config: Config) -> Scorer:
    return Scorer(sentiment_config(config))


def build_alerting(config: Config) -> Alerting:
    return Alerting(
        rules=config.alerts.rules,
        channels=tuple(c.name for c in config.alerts.channels),
        influential_sources=frozenset(s.name for s in config.sources if s.influential),
    )


@asynccontextmanager
async def open_runtime(
    config: Config,
    *,
    store: Store | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    now: Callable[[], datetime] = utc_now,
    workers: int = 0,
) -> AsyncIterator[Runtime]:
    """Everything a poll needs; `workers` > 0 starts that many processes for parsing and scoring."""
    own_store = store is None
    store = store or Store.open(config.database)
    fetcher = Fetcher(
        config.fetch,
        user_agent=config.user_agent,
        transport=transport if transport is not None else config.transport,
    )
    cpu: CpuPool | None = None
    try:
        async with fetcher:
            rt = Runtime(
                store=store,
                fetcher=fetcher,
                matcher=Matcher.from_brands(config.brands),
                scorer_factory=lambda: build_scorer(config),
                lexicon_version=lexicon_version(sentiment_config(config)),
                now=now,
                alerting=build_alerting(config),
            )
            if workers > 0:
                cpu = rt.cpu = CpuPool(
                    workers,
                    config.brands,
                    sentiment_config(config),
                    analyse_inline=lambda items, skip, threads: analyse_items(
                        items, rt.matcher, rt.scorer, skip_hashes=skip, brand_threads=threads
                    ),
                )
            yield rt
    finally:
        if cpu is not None:
            cpu.close()
        if own_store:
            store.close()
