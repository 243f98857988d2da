"""The source-kind contract: what every kind module follows, and the pieces it builds on.

A kind is ONE module (plus its README row). It defines an options model, an async `poll`, and
registers itself:

    class AcmeOptions(KindOptions):
        base_url: WebUrl = "https://api.acme.example"
        token: Annotated[str | None, Secret] = None
        request_interval: Duration = 1.0

    async def poll(ctx: PollContext) -> SourcePoll: ...

    register(SourceKind(name="acme", options_model=AcmeOptions, poll=poll))

The rules every kind keeps (the pipeline, the store and `check` rely on them):

- **Never raise.** Network, HTTP, JSON and content problems come back as `SourcePoll(error=...)`
  (a sentence a marketing person can act on, naming the service and the remedy), with the
  `responses` made so far. `ctx.fetcher` never raises for I/O, so a kind needs no try/except
  around it. One broken source never stops a poll.
- **`None` means unchanged.** `SourcePoll.cursor` and `SourcePoll.validators` left at None keep
  what the store has; a dict replaces it. A failed poll returns `cursor=None`, so the next poll
  resumes where the last good one stopped.
- **Oldest first.** Items are returned in the order they were written (`oldest_first`), so a
  thread's root is processed before its replies.
- **Thread keys.** Every item names its conversation: `thread_key` is `"<service>:<id>"` (more
  `:`-separated parts where the id is only unique per host: `thread_key("discourse", host, id)`).
  A reply's `thread_title` (`with_thread_title`) is the conversation's title, shown where the
  reply has none of its own.
- **Pacing.** Requests go through `ctx.fetcher` only (the one HTTP client: limits, retries,
  address guard); a service's documented rate is kept with `pace(ctx, url, seconds)`, usually
  from a `request_interval: Duration` option.
- **Options.** The options model subclasses `KindOptions` (unknown keys are an error, the model is
  frozen, a `base_url` loses its trailing slash); durations are `Duration` (`15s`, `500ms`, or a
  number of seconds); an http(s) address is `WebUrl`; a credential is marked `Secret`
  (`Annotated[str | None, Secret]`, or `Field(json_schema_extra={"secret": True})`): `check`
  shows it as `***`, the options' repr hides it, and its value is one of the config's secrets
  (`Config.secrets`), masked in logs, errors and the URLs the store keeps. Every kind that talks to a fixed public API
  takes `base_url`, so it can be pointed at a mirror or a local test server.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic.fields import FieldInfo

from ..models import THREAD_TITLE_KEY
from ..units import parse_iso

if TYPE_CHECKING:
    from ..models import Item, SourceSpec
    from . import PollContext, StreamContext

__all__ = [
    "JSON_ACCEPT",
    "THREAD_TITLE",
    "Duration",
    "KindOptions",
    "OptionalSecret",
    "Secret",
    "WebUrl",
    "blank_to_none",
    "is_secret",
    "load_options",
    "oldest_first",
    "options_dict",
    "pace",
    "parse_iso_time",
    "parse_seconds",
    "secret_fields",
    "spec_options",
    "thread_key",
    "with_thread_title",
]

JSON_ACCEPT = "application/json"
# ISO 8601 times in cursors and API fields: the package's one parser (naive times are UTC).
parse_iso_time = parse_iso

_MASK = "***"
_NO_DATE = datetime.max.replace(tzinfo=UTC)
_Options = TypeVar("_Options", bound=BaseModel)


# ---------------------------------------------------------------------------------------------
# Option types
# ---------------------------------------------------------------------------------------------


def parse_seconds(value: Any) -> float:
    """A number of seconds (0 allowed) or a duration as sources.yaml writes it (`6s`, `500ms`)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a number of seconds: it must be finite")
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    from ..units import parse_duration

    return parse_duration(value)


def blank_to_none(value: str | None) -> str | None:
    """A secret given as an empty `${VAR}` counts as not given."""
    return value.strip() or None if value is not None else None


class _SecretMarker:
    """Marks an option as a credential (see `Secret`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret"


# An option whose value is a credential: `Annotated[str | None, Secret]`. `check` shows it as
# `***`, the options' repr hides it, logs and the store mask it; it goes only into the requests
# it is for.
Secret: Final = _SecretMarker()

# The one duration type of the kinds: a number of seconds (at least 0) or a duration like those
# of `every:` ("500ms", "6s", "2d").
Duration = Annotated[float, BeforeValidator(parse_seconds)]
# An http(s) address: `base_url` and the like.
WebUrl = Annotated[str, Field(pattern=r"^https?://\S+$")]
# A token or key from the environment; blank means none.
OptionalSecret = Annotated[str | None, AfterValidator(blank_to_none), Secret]


def is_secret(field: FieldInfo) -> bool:
    """Whether an options field is marked `Secret` (or `json_schema_extra={"secret": True}`)."""
    if any(m is Secret for m in field.metadata):
        return True
    extra = field.json_schema_extra
    return isinstance(extra, dict) and extra.get("secret") is True


@functools.cache
def secret_fields(model: type[BaseModel]) -> frozenset[str]:
    """The names of `model`'s options that are credentials."""
    return frozenset(name for name, f in model.model_fields.items() if is_secret(f))


class KindOptions(BaseModel):
    """The base of every kind's options model: unknown keys are an error that names them, the
    options are frozen, a `base_url` loses its trailing slash, and secrets stay out of reprs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("base_url", check_fields=False)
    @classmethod
    def _base_url_without_slash(cls, v: Any) -> Any:
        return v.rstrip("/") if isinstance(v, str) else v

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        secret = secret_fields(type(self))
        for name, value in super().__repr_args__():
            yield name, (_MASK if name in secret and value is not None else value)


def spec_options(model: type[_Options], spec: SourceSpec) -> _Options:
    """`spec`'s options as its kind's model: config validated them once, at the edge, and the
    spec carries that instance, so this only hands it back (typed).

    A spec built by hand (a test, a benchmark) may carry a plain mapping instead: it is validated
    here, where a None (a field left out) takes the default.
    """
    options = spec.options
    if isinstance(options, model):
        return options
    if isinstance(options, Mapping):
        return model.model_validate({k: v for k, v in options.items() if v is not None})
    raise TypeError(
        f"source {spec.name!r} carries {type(options).__name__} options, not {model.__name__}"
    )


def load_options(model: type[_Options], ctx: PollContext | StreamContext) -> _Options:
    """The source's options, as validated by config (see `spec_options`)."""
    return spec_options(model, ctx.spec)


def options_dict(options: Any) -> dict[str, Any]:
    """A source's options as plain values (what `check` shows, where URLs are looked for)."""
    if isinstance(options, BaseModel):
        return options.model_dump()
    return dict(options) if isinstance(options, Mapping) else {}


# ---------------------------------------------------------------------------------------------
# Pacing, order, threads
# ---------------------------------------------------------------------------------------------


def pace(ctx: PollContext, url: str, seconds: float) -> None:
    """Space requests to `url`'s host `seconds` apart (the service's documented rate limit)."""
    host = urlsplit(url).hostname
    if host:
        ctx.fetcher.set_host_interval(host, seconds)


def oldest_first(items: list[Item]) -> list[Item]:
    """Items in the order they were written, so a thread's root is processed before its replies
    (a reply seen before its thread is known to be about a brand would not count as context)."""
    return sorted(items, key=lambda it: it.published_at or _NO_DATE)


def thread_key(service: str, *parts: object) -> str:
    """A conversation's key: `"<service>:<part>:..."`, e.g. `thread_key("hn", 42)` -> `hn:42`."""
    if not service or ":" in service:
        raise ValueError(f"a thread key's service is one word without ':', not {service!r}")
    return ":".join([service, *(str(p) for p in parts)])


# Where an item's `extra` keeps the title of the conversation it belongs to.
THREAD_TITLE = THREAD_TITLE_KEY


def with_thread_title(extra: Mapping[str, Any], title: str) -> dict[str, Any]:
    """`extra` plus the conversation's title (`listener.models.thread_title` reads it)."""
    return {**extra, THREAD_TITLE: title}
