"""Source kinds: one module per kind, registered by the name used as `kind:` in sources.yaml.

A kind is a small object with an options model (a `base.KindOptions`) and an async `poll` that
turns the service's responses into `Item`s. The rules every kind follows are written in
`listener/sources/base.py`. Adding a kind to the package means adding one module here and its
name to `_KIND_MODULES`; a kind defined elsewhere calls `register` (tests/test_new_kind.py).
Nothing else in the project changes.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from ..models import SourcePoll, SourceSpec
from ..models import SourceState as SourceState  # re-exported: its old home
from ..models import Validators as Validators

if TYPE_CHECKING:
    from ..fetch import Fetcher
    from ..parse import ParsedFeed
    from ..store import Store

# Modules that define kinds; imported on first use so a broken optional kind cannot stop the rest.
_KIND_MODULES = (
    "feed",
    "hackernews",
    "stackexchange",
    "reddit",
    "github",
    "mastodon",
    "lemmy",
    "discourse",
    "bluesky",
    "youtube",
    "google_alerts",
    "jetstream",
    "gdelt",
)


async def parse_feed_inline(body: bytes, **kwargs: Any) -> ParsedFeed:
    from ..parse import parse_feed

    return parse_feed(body, **kwargs)


@dataclass(frozen=True)
class PollContext:
    spec: SourceSpec
    fetcher: Fetcher
    state: SourceState
    now: Callable[[], datetime]
    # `listener.parse.parse_feed` as a coroutine: inline, or in a worker process for big polls.
    parse_feed: Callable[..., Awaitable[ParsedFeed]] = parse_feed_inline
    # The database, for what sources share across polls and restarts (host budgets, sessions);
    # None outside the pipeline, where kinds keep that in memory.
    store: Store | None = None


@dataclass(frozen=True)
class StreamContext:
    """What a stream kind needs (see `listener.stream`): it reads until `stop` is set, keeps only
    the posts the brand rules want, and hands each batch to `deliver`, which commits the items and
    the batch's cursor together (so a cursor is stored only once what it covers is stored)."""

    spec: SourceSpec
    state: SourceState
    now: Callable[[], datetime]
    user_agent: str
    stop: asyncio.Event
    deliver: Callable[[SourcePoll], Awaitable[None]]
    # Whether a text names a brand (the compiled matcher; a cheap prefilter runs first).
    wants: Callable[[str], bool]
    # Which of these thread keys are conversations about a brand (a reply that does not name the
    # brand is kept when its thread is one).
    brand_threads: Callable[[Iterable[str]], set[str]]
    # A one-off read (`listener poll`): stop once the stream reaches this time (epoch µs).
    until_us: int | None = None
    connect_timeout_s: float = 10.0


class StreamFunction(Protocol):
    def __call__(self, ctx: StreamContext) -> Awaitable[None]: ...


class PollFunction(Protocol):
    def __call__(self, ctx: PollContext) -> Awaitable[SourcePoll]: ...


class ThreadFunction(Protocol):
    def __call__(
        self, ctx: PollContext, thread_key: str, thread_url: str
    ) -> Awaitable[SourcePoll]: ...


@dataclass(frozen=True)
class SourceKind:
    name: str
    options_model: type[BaseModel]
    poll: PollFunction
    # Reads a thread's replies (a comments feed, a Reddit comments page, an API thread view).
    fetch_thread: ThreadFunction | None = None
    description: str = ""
    # What `check` and `status` tell the user about one source from its stored cursor (e.g. "this
    # instance shows hashtag timelines to logged-in users only: set `token:`").
    notes: Callable[[SourceSpec, Mapping[str, Any]], list[str]] | None = None
    # Warnings about all the sources of this kind together (e.g. a shared budget too small).
    check_sources: Callable[[Sequence[SourceSpec]], list[str]] | None = None
    # A stream kind (a websocket): `listener run` keeps it open instead of scheduling polls.
    stream: StreamFunction | None = None


_REGISTRY: dict[str, SourceKind] = {}
_loaded = False


def register(kind: SourceKind) -> SourceKind:
    """Make `kind` usable as `kind: <name>` in sources.yaml (a kind module calls this on import)."""
    _REGISTRY[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Forget the kind `name` registered (a test's own kind, once the test is done)."""
    _REGISTRY.pop(name, None)


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _KIND_MODULES:
        importlib.import_module(f"{__name__}.{module}")


def kind_names() -> Sequence[str]:
    _load()
    return sorted(_REGISTRY)


def get_kind(name: str) -> SourceKind:
    # Only the kinds a config uses are imported: a poll of feeds never loads the API kinds.
    if name not in _REGISTRY and name in _KIND_MODULES:
        importlib.import_module(f"{__name__}.{name}")
    if name not in _REGISTRY:
        _load()
    return _REGISTRY[name]


def is_kind(name: str) -> bool:
    try:
        get_kind(name)
    except KeyError:
        return False
    return True


def options_model(name: str) -> type[BaseModel]:
    return get_kind(name).options_model


def source_notes(spec: SourceSpec, cursor: Mapping[str, Any]) -> list[str]:
    """What the kind of `spec` says about it, given its stored cursor ({} before a poll)."""
    kind = get_kind(spec.kind)
    return kind.notes(spec, cursor) if kind.notes is not None else []


def check_warnings(specs: Sequence[SourceSpec]) -> list[str]:
    """Every kind's warnings about its configured sources, taken together."""
    out: list[str] = []
    for name in sorted({s.kind for s in specs}):
        kind = get_kind(name)
        if kind.check_sources is not None:
            out.extend(kind.check_sources([s for s in specs if s.kind == name]))
    return out
