"""Build, once per process, the parts a poll needs from a validated config."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

import httpx

from .alerts.rules import Alerting
from .config import Config
from .fetch import Fetcher
from .match import Matcher
from .pipeline import Runtime, utc_now
from .sentiment import Scorer, SentimentConfig
from .store import Store


def build_scorer(config: Config) -> Scorer:
    s = config.sentiment
    return Scorer(
        SentimentConfig(
            positive_threshold=s.positive_threshold,
            negative_threshold=s.negative_threshold,
            lexicon=dict(s.lexicon),
            phrases=dict(s.phrases),
            domain_lexicon=s.domain_lexicon,
        )
    )


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
) -> AsyncIterator[Runtime]:
    own_store = store is None
    store = store or Store.open(config.database)
    fetcher = Fetcher(
        config.fetch,
        user_agent=config.user_agent,
        transport=transport if transport is not None else config.transport,
    )
    try:
        async with fetcher:
            yield Runtime(
                store=store,
                fetcher=fetcher,
                matcher=Matcher.from_brands(config.brands),
                scorer_factory=lambda: build_scorer(config),
                now=now,
                alerting=build_alerting(config),
            )
    finally:
        if own_store:
            store.close()
