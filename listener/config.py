"""Load and validate `sources.yaml` into typed, frozen objects.

Validation happens once, here, at the edge: unknown keys are rejected with their place
(`sources[3].evry`, with a "did you mean" for near misses), `${VAR}` references are filled from
the environment (a missing variable is an error that names it), durations such as `15m` are
parsed, and every error message is one line carrying the file, the line and the key so a person
can fix it without reading code.

The YAML itself is read defensively: duplicate keys are errors, and aliases may not expand a
document by more than MAX_ALIASED_VALUES values. Durations and sizes are finite and bounded (a
source is polled at most every MIN_EVERY_S, or MIN_EVERY_LOCAL_S on this machine).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .models import AlertSettings, Brand, FetchLimits, Product, Retention, Rules, SourceSpec
from .secrets import mask
from .sentiment import SentimentConfig

# Durations are read and written in `listener.units` (every layer uses them); importable here too.
from .units import MAX_DURATION_S as MAX_DURATION_S
from .units import format_duration as format_duration
from .units import parse_duration as parse_duration

DEFAULT_CONFIG = "sources.yaml"
# libyaml's parser when PyYAML was built with it: 8x faster on a config with 1,000 sources.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
CONFIG_ENV = "LISTENER_CONFIG"


class ConfigError(Exception):
    """A config problem a person must fix; `str()` says where and what."""

    def __init__(self, problems: Sequence[str], secrets: Collection[str] = ()) -> None:
        # A value from the environment is a secret, also when it is why the config is wrong.
        self.problems = [mask(p, secrets) for p in problems]
        super().__init__("\n".join(self.problems))


# --- reading YAML --------------------------------------------------------------------------

# Aliases (`*name`) may repeat what an anchor holds, but only this many values in all beyond the
# ones written out: a "billion laughs" document of nested aliases is refused before anything
# walks it, instead of growing to gigabytes.
MAX_ALIASED_VALUES = 100_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _YamlProblem(Exception):
    def __init__(self, node: yaml.Node, key: str, message: str) -> None:
        super().__init__(message)
        self.line = node.start_mark.line + 1
        self.key = key
        self.message = message


def _check_nodes(root: yaml.Node) -> None:
    """Refuse duplicate keys, recursive aliases and alias expansion beyond MAX_ALIASED_VALUES.

    Works on the composed node graph, where an alias is the anchor's own node: each node is
    visited once and its expanded size remembered, so the check is linear in the file's size.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()
    written = 0

    def size(node: yaml.Node, path: str) -> int:
        nonlocal written
        ident = id(node)
        if ident in sizes:
            return sizes[ident]
        if ident in active:
            raise _YamlProblem(node, path, "an alias refers to the anchor it is inside (a loop)")
        active.add(ident)
        written += 1
        total = 1
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                sub = f"{path}.{key}" if path else key
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                    seen = first.setdefault((key_node.tag, key), key_node.start_mark.line + 1)
                    if seen != key_node.start_mark.line + 1:
                        raise _YamlProblem(
                            key_node, sub, f"duplicate key {key!r} (already set on line {seen})"
                        )
                total += size(key_node, sub) + size(value_node, sub)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(child, f"{path}[{i}]") for i, child in enumerate(node.value))
        active.discard(ident)
        sizes[ident] = total
        if total > written + MAX_ALIASED_VALUES:
            raise _YamlProblem(
                node,
                path,
                f"aliases (*name) repeat more than {MAX_ALIASED_VALUES:,} values: "
                "write the values out, or use fewer nested aliases",
            )
        return total

    size(root, "")


def _load_yaml(text: str, path: Path) -> Any:
    """Parse `text` (libyaml when available) with duplicate keys and alias bombs refused."""
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: not valid YAML: {problem}"]) from None
    except _YamlProblem as exc:
        raise ConfigError(
            [f"{path}:{exc.line}: {exc.key or '(top level)'}: {exc.message}"]
        ) from None
    except RecursionError:
        raise ConfigError([f"{path}: not valid YAML: nested too deeply"]) from None
    finally:
        loader.dispose()


# --- durations and environment -------------------------------------------------------------


def duration_between(low: float, high: float = MAX_DURATION_S, why: str = "") -> Any:
    """A pydantic before-validator: a duration from `low` to `high` seconds (inclusive)."""

    def check(value: Any) -> float:
        seconds = parse_duration(value)
        if seconds < low:
            raise ValueError(
                f"{format_duration(seconds)} is too short: at least {format_duration(low)}{why}"
            )
        if seconds > high:
            raise ValueError(
                f"{format_duration(seconds)} is too long: at most {format_duration(high)}"
            )
        return seconds

    return BeforeValidator(check)


_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(
    value: Any,
    env: Mapping[str, str],
    path: str,
    problems: list[str],
    secrets: set[str] | None = None,
) -> Any:
    """`value` with `${VAR}` filled in; every value taken from `env` is added to `secrets`."""
    if secrets is None:
        secrets = set()
    if isinstance(value, str):

        def replace(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                if env[name]:
                    secrets.add(env[name])  # a secret everywhere it goes (listener.secrets)
                return env[name]
            if default is not None:
                return default
            problems.append(f"{path}: environment variable {name} is not set")
            return ""

        return _ENV_RE.sub(replace, value)
    if isinstance(value, dict):
        return {
            k: _interpolate(v, env, f"{path}.{k}" if path else str(k), problems, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _interpolate(v, env, f"{path}[{i}]", problems, secrets) for i, v in enumerate(value)
        ]
    return value


Duration = float


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )


def _duration_field(v: Any) -> float:
    return parse_duration(v)


# `every:` floors. A remote source polled more often than every 30s gets rate-limited or
# blocked (and a 1ms interval is thousands of requests a second); a source on this machine
# (127.0.0.1, ::1, localhost: a test server, a local mirror) may be polled every second.
MIN_EVERY_S = 30.0
MIN_EVERY_LOCAL_S = 1.0
_LOCAL_HOSTS = re.compile(r"^(?:localhost|127(?:\.\d{1,3}){3}|\[?::1\]?)$", re.I)


def is_local_url(url: str | None) -> bool:
    from urllib.parse import urlsplit

    if not url:
        return False
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return bool(_LOCAL_HOSTS.match(host))


def every_floor(url: str | None) -> float:
    """The shortest `every:` for a source at `url`."""
    return MIN_EVERY_LOCAL_S if is_local_url(url) else MIN_EVERY_S


# Floors are applied per source (they depend on where the source is), in load_config.
Every = Annotated[float, BeforeValidator(parse_duration)]


# --- brands --------------------------------------------------------------------------------


def _str_list(v: Any) -> Any:
    if isinstance(v, str):
        return [v]
    return v


def _query(v: str | None) -> str | None:
    """A brand or product `query:` must parse: the column and what was expected, if not."""
    if v is None:
        return None
    from .query import parse

    if not v.strip():
        raise ValueError("the query is empty")
    parse(v)  # QueryError is a ValueError: "column 12: expected ..., found ..."
    return v


class ProductModel(_Strict):
    name: str = Field(min_length=1)
    terms: list[str] = Field(default_factory=list)
    query: str | None = None

    _terms = field_validator("terms", mode="before")(_str_list)
    _query = field_validator("query")(_query)


class BrandModel(_Strict):
    name: str = Field(min_length=1)
    terms: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    case_sensitive: bool = False
    domains: list[str] = Field(default_factory=list)
    products: list[ProductModel] = Field(default_factory=list)
    # A boolean query (listener.query): alone it makes a mention; with terms both must hold.
    query: str | None = None
    # The brand's own voices: display names and handles as each platform shows them.
    accounts: list[str] = Field(default_factory=list)

    _lists = field_validator("terms", "exclude", "domains", "accounts", mode="before")(_str_list)
    _query = field_validator("query")(_query)

    @field_validator("terms", "exclude", "domains", "accounts")
    @classmethod
    def _no_blank(cls, v: list[str]) -> list[str]:
        if any(not t.strip() for t in v):
            raise ValueError("terms must not be empty strings")
        return v


# --- sources -------------------------------------------------------------------------------


_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]*$"


class SourceModel(BaseModel):
    """The keys every source has; kind-specific keys are checked by the kind's own model."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    name: str = Field(min_length=1, pattern=_NAME_PATTERN)
    kind: str = "feed"
    every: Every | None = None
    enabled: bool = True
    follow_threads: bool = True
    influential: bool = False


# --- sentiment -----------------------------------------------------------------------------


class SentimentModel(_Strict):
    positive_threshold: float = Field(0.05, ge=-1, le=1)
    negative_threshold: float = Field(-0.05, ge=-1, le=1)
    domain_lexicon: bool = True
    lexicon: dict[str, float] = Field(default_factory=dict)
    phrases: dict[str, float] = Field(default_factory=dict)

    @field_validator("lexicon", "phrases")
    @classmethod
    def _valence(cls, v: dict[str, float]) -> dict[str, float]:
        for word, valence in v.items():
            if not word.strip():
                raise ValueError("an empty word")
            if not -4 <= valence <= 4:
                raise ValueError(
                    f"valence of {word!r} is {valence}: VADER valences run from -4 to 4"
                )
        return v

    @field_validator("lexicon")
    @classmethod
    def _single_words(cls, v: dict[str, float]) -> dict[str, float]:
        for word in v:
            if len(word.split()) > 1:
                raise ValueError(f"{word!r} has several words: put it under `phrases:`")
        return v

    @model_validator(mode="after")
    def _ordered(self) -> SentimentModel:
        if self.negative_threshold >= self.positive_threshold:
            raise ValueError("negative_threshold must be below positive_threshold")
        return self


# --- fetching ------------------------------------------------------------------------------


# A timeout shorter than a second fails on any ordinary network; an endless one hangs a poll.
MIN_TIMEOUT_S = 1.0
# A body cap below 1 KB refuses every real feed; above 1 GB it protects nothing.
MIN_BODY = 1024
MAX_BODY = 1024**3


class FetchModel(_Strict):
    connect_timeout: Annotated[float, duration_between(MIN_TIMEOUT_S, 300)] = 10.0
    read_timeout: Annotated[float, duration_between(MIN_TIMEOUT_S, 600)] = 30.0
    total_timeout: Annotated[float, duration_between(MIN_TIMEOUT_S, 3600)] = 60.0
    # All the network time one source poll may take: attempts, waits between them, thread reads.
    poll_budget: Annotated[float, duration_between(MIN_TIMEOUT_S, 3600)] = 90.0
    max_body: str | int = "20MB"
    max_redirects: int = Field(5, ge=0, le=30)
    retries: int = Field(2, ge=0, le=10)
    concurrency: int = Field(32, ge=1, le=512)
    per_host: int = Field(8, ge=1, le=128)
    user_agent: str | None = None
    transport: Literal["aiohttp", "httpx"] = "aiohttp"

    @field_validator("max_body", mode="before")
    @classmethod
    def _size(cls, v: Any) -> int:
        size = parse_size(v)
        if size < MIN_BODY:
            raise ValueError(f"{v!r} is too small: at least 1KB (a feed is bigger than that)")
        if size > MAX_BODY:
            raise ValueError(f"{v!r} is too big: at most 1GB")
        return size


def parse_size(v: Any) -> int:
    """`20MB`, `512KB`, `1GB` or a number of bytes -> bytes."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    m = (
        re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", v, re.I)
        if isinstance(v, str)
        else None
    )
    if not m:
        raise ValueError(f"{v!r} is not a size: use e.g. 20MB or 512KB")
    number, unit = float(m.group(1)), (m.group(2) or "B").upper().replace("I", "")
    return int(number * {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}[unit])


# --- alerts --------------------------------------------------------------------------------


class NegativeThreadRule(_Strict):
    enabled: bool = True
    channels: list[str] | None = None  # default: every channel
    min_negative: int = Field(3, ge=1)  # negative posts within `window` ...
    window: Annotated[float, duration_between(60)] = 24 * 3600.0
    mean_at_most: float = Field(-0.3, ge=-1, le=1)  # ... or a mean compound this low ...
    min_posts: int = Field(3, ge=1)  # ... over at least this many posts
    escalate_every: int = Field(3, ge=1)  # a new level every N more negative posts
    cooldown: float = 3600.0

    _d = field_validator("cooldown", mode="before")(_duration_field)


class VeryNegativeMentionRule(_Strict):
    enabled: bool = True
    channels: list[str] | None = None  # default: every channel
    compound_at_most: float = Field(-0.75, ge=-1, le=0)
    sources: list[str] = Field(default_factory=list)  # besides sources marked influential
    cooldown: float = 0.0

    _d = field_validator("cooldown", mode="before")(
        lambda v: 0.0 if v in (0, "0") else parse_duration(v)
    )


class SpikeRule(_Strict):
    enabled: bool = True
    channels: list[str] | None = None  # default: every channel
    window: float = 3600.0
    baseline: float = 7 * 86400.0
    k: float = Field(3.0, gt=0)
    min_count: int = Field(5, ge=1)
    cooldown: float = 6 * 3600.0

    _d = field_validator("window", "baseline", "cooldown", mode="before")(_duration_field)

    @model_validator(mode="after")
    def _bounds(self) -> SpikeRule:
        if self.baseline <= self.window:
            raise ValueError(
                f"baseline ({format_duration(self.baseline)}) must be longer than window "
                f"({format_duration(self.window)}): it is what the window is compared with"
            )
        return self


class SourceHealthRule(_Strict):
    enabled: bool = True
    channels: list[str] | None = None  # default: every channel
    failures: int = Field(5, ge=1)
    # A source that answers but has had nothing new for this many of its usual gaps between
    # new items (and at least `stale_min`) is stale: a service serving old data. 0: off.
    stale_factor: float = Field(10.0, ge=0)
    stale_min: float = 6 * 3600.0

    _d = field_validator("stale_min", mode="before")(_duration_field)


class ChurnRiskRule(_Strict):
    """A customer says they are leaving: one alert per conversation, on its own channels."""

    enabled: bool = True
    channels: list[str] | None = None  # default: every channel


class UnansweredNegativeRule(_Strict):
    """A conversation with a negative customer post that nobody from the brand has answered
    after `after`: one alert per conversation."""

    enabled: bool = True
    channels: list[str] | None = None  # default: every channel
    after: Annotated[float, duration_between(60)] = 4 * 3600.0
    min_negative: int = Field(1, ge=1)  # negative customer posts that make it a complaint


class RulesModel(_Strict):
    negative_thread: NegativeThreadRule = Field(default_factory=NegativeThreadRule)
    churn_risk: ChurnRiskRule = Field(default_factory=ChurnRiskRule)
    unanswered_negative: UnansweredNegativeRule = Field(default_factory=UnansweredNegativeRule)
    very_negative_mention: VeryNegativeMentionRule = Field(default_factory=VeryNegativeMentionRule)
    spike: SpikeRule = Field(default_factory=SpikeRule)
    source_health: SourceHealthRule = Field(default_factory=SourceHealthRule)


# The outbox is looked at, and a failed delivery retried, at most twice a second.
MIN_FLUSH_S = 0.5


class AlertsModel(_Strict):
    # Each channel is validated by its kind's options model (`listener.alerts.channels`
    # registry) in load_config, where its kind is known.
    channels: list[Any] = Field(default_factory=list)
    rules: RulesModel = Field(default_factory=RulesModel)
    # How often the outbox is looked at, and how retries of an undelivered alert back off.
    flush_every: Annotated[float, duration_between(MIN_FLUSH_S, 86400)] = 15.0
    retry_first: Annotated[float, duration_between(MIN_FLUSH_S, 86400)] = 30.0
    retry_max: Annotated[float, duration_between(MIN_FLUSH_S, 7 * 86400)] = 3600.0

    @field_validator("channels", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        # `channels:` with every example under it commented out: no channels yet.
        return [] if v is None else v

    @model_validator(mode="after")
    def _backoff(self) -> AlertsModel:
        if self.retry_max < self.retry_first:
            raise ValueError("retry_max must not be shorter than retry_first")
        return self


# --- retention -----------------------------------------------------------------------------


def _retention_field(v: Any) -> float:
    if v in (0, "0"):
        return 0.0  # keep for ever
    seconds = parse_duration(v)
    if not 3600 <= seconds <= 3650 * 86400:
        raise ValueError("must be between 1h and 3650d (or 0 to keep everything)")
    return seconds


class RetentionModel(_Strict):
    """How long the fetch log (table `fetches`, one row per request) is kept: rows older than
    `fetches`, and beyond the newest `fetches_per_source` of a source, are deleted by `run` (at
    start, then every 10 minutes) and after each `poll`. 0 turns either limit off."""

    fetches: float = 30 * 86400.0
    fetches_per_source: int = Field(2000, ge=0)

    _d = field_validator("fetches", mode="before")(_retention_field)


class ConfigModel(_Strict):
    database: str = "mentions.db"
    # Processes that parse and score in parallel; default: one per core for polls of 50+ sources.
    workers: int | None = Field(None, ge=0, le=64)
    # The default polling interval; each source's floor is checked where its address is known.
    every: Annotated[
        float,
        duration_between(
            MIN_EVERY_LOCAL_S,
            why=f" ({format_duration(MIN_EVERY_S)} for sources on other machines)",
        ),
    ] = 900.0
    brands: list[BrandModel] = Field(min_length=1)
    sources: list[SourceModel] = Field(default_factory=list)
    sentiment: SentimentModel = Field(default_factory=SentimentModel)
    fetch: FetchModel = Field(default_factory=FetchModel)
    alerts: AlertsModel = Field(default_factory=AlertsModel)
    retention: RetentionModel = Field(default_factory=RetentionModel)
    # Where `listener serve` is reachable: alerts link to each conversation's page there.
    serve_url: str | None = None

    @field_validator("serve_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip().rstrip("/")
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{v!r} is not an http(s) URL (e.g. http://127.0.0.1:8001)")
        return v


# --- the validated config ------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    path: Path
    database: Path
    brands: tuple[Brand, ...]
    sources: tuple[SourceSpec, ...]
    sentiment: SentimentConfig
    fetch: FetchLimits
    user_agent: str | None
    transport: Literal["aiohttp", "httpx"]
    alerts: AlertSettings
    workers: int | None = None
    # Every value `${VAR}` took from the environment: masked wherever it would be shown.
    secrets: frozenset[str] = frozenset()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    retention: Retention = field(default_factory=Retention)
    serve_url: str | None = None

    def source(self, name: str) -> SourceSpec:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # pydantic puts union member names (e.g. 'SlackChannelModel') in the loc: skip them
            if part.endswith("Model") or part.startswith("function-"):
                continue
            out += f".{part}" if out else part
    return out


def _line_index(text: str) -> dict[str, int]:
    """Map `sources[3].every`-style paths to 1-based line numbers of the YAML source."""
    index: dict[str, int] = {}
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError:
        return index

    def walk(node: yaml.Node, path: str) -> None:
        index.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = str(key_node.value)
                sub = f"{path}.{key}" if path else key
                index[sub] = key_node.start_mark.line + 1
                walk(value_node, sub)
                index[sub] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, child in enumerate(node.value):
                walk(child, f"{path}[{i}]")

    if root is not None:
        walk(root, "")
    return index


class _LazyIndex(Mapping[str, int]):
    def __init__(self, text: str) -> None:
        self._text = text
        self._index: dict[str, int] | None = None

    def _built(self) -> dict[str, int]:
        if self._index is None:
            self._index = _line_index(self._text)
        return self._index

    def __getitem__(self, key: str) -> int:
        return self._built()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())


def _line_for(index: Mapping[str, int], path: str) -> int | None:
    while path:
        if path in index:
            return index[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean every?)` for a near miss among `choices`, else ''."""
    choices = sorted(set(choices))

    def squash(w: str) -> str:
        return re.sub(r"[\s_-]+", "", w.lower())

    same = [c for c in choices if squash(c) == squash(word)]
    close = same or difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field's type holds (through lists, unions, Annotated, dicts)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _keys_at(models: Sequence[type[BaseModel]], loc: Sequence[int | str]) -> set[str]:
    """The keys allowed in the mapping at `loc` below `models` (for "did you mean")."""
    for part in loc:
        if isinstance(part, int):
            continue
        named = [m for m in models if m.__name__ == part]
        if named:  # a union member's name
            models = named
            continue
        models = [
            sub
            for m in models
            for name, f in m.model_fields.items()
            if part in (name, f.alias)
            for sub in _models_in(f.annotation)
        ]
    return {f.alias or name for m in models for name, f in m.model_fields.items()}


def _human_pattern(pattern: str, value: Any) -> str:
    if "https?://" in pattern:
        if isinstance(value, str) and re.match(r"^https?://", value):
            return "a web address must not contain spaces"
        if isinstance(value, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value):
            return "only http:// and https:// addresses can be used here"
        return "not a web address: write it in full, starting with https:// (or http://)"
    if pattern == _NAME_PATTERN:
        return (
            f"{value!r} is not a usable name: letters, digits and _ . : @ / - only, "
            "starting with a letter or digit"
        )
    return f"{value!r} does not have the expected form"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(err: Mapping[str, Any], models: Sequence[type[BaseModel]] = ()) -> tuple[str, str]:
    """One pydantic error as (path, message): plain words, no regexes, one line."""
    kind, loc, value = err["type"], tuple(err["loc"]), err.get("input")
    ctx = err.get("ctx") or {}
    path = _loc(loc)
    if kind == "extra_forbidden":
        return path, "unknown key" + did_you_mean(str(loc[-1]), _keys_at(models, loc[:-1]))
    if kind == "missing":
        return path, "required key is missing"
    if kind == "string_pattern_mismatch":
        return path, _human_pattern(str(ctx.get("pattern", "")), value)
    if kind in ("less_than_equal", "less_than"):
        bound = ctx.get("le", ctx.get("lt"))
        word = "at most" if kind == "less_than_equal" else "less than"
        return path, f"{_short(value)} is too large: {word} {bound}"
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        word = "at least" if kind == "greater_than_equal" else "more than"
        return path, f"{_short(value)} is too small: {word} {bound}"
    if kind == "finite_number":
        return path, f"{_short(value)} is not a usable number: it must be finite"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return path, f"{_short(value)} is not a whole number"
    if kind in ("float_parsing", "float_type"):
        return path, f"{_short(value)} is not a number"
    if kind in ("bool_parsing", "bool_type"):
        return path, f"{_short(value)} is not true or false"
    if kind in ("string_type", "list_type", "dict_type", "model_type", "model_attributes_type"):
        want = {"string_type": "text", "list_type": "a list"}.get(kind, "a mapping (key: value)")
        return path, f"expected {want}, not {_short(value)}"
    if kind == "too_short":
        if isinstance(value, str):
            return path, "must not be empty"
        return path, f"must list at least {ctx.get('min_length', 1)}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        choices = re.findall(r"'([^']*)'", expected)
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        return path, f"{_short(value)} is not one of {expected.replace(' or ', ', ')}{hint}"
    message = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return path, " ".join(message.split())


def _within(where: str, error: tuple[str, str]) -> tuple[str, str]:
    key, message = error
    return (f"{where}.{key}" if key else where), message


def _format_errors(
    path: Path, index: Mapping[str, int], errors: Sequence[tuple[str, str]]
) -> list[str]:
    out = []
    for key, message in errors:
        line = _line_for(index, key)
        where = f"{path}:{line}" if line else str(path)
        problem = f"{where}: {key or '(top level)'}: {' '.join(message.split())}"
        if problem not in out:
            out.append(problem)
    return out


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate a config file. Raises ConfigError with located messages."""
    from .sources import is_kind, kind_names, options_model  # kinds register their option models
    from .sources.base import secret_fields

    path = Path(path)
    env = os.environ if env is None else env
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [f"{path}: no such file (create one with `listener init {path}`)"]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    data = _load_yaml(text, path)
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping with `brands:` and `sources:` at the top"])

    # Where each key stands in the file: only worked out when there is an error to place.
    index = _LazyIndex(text)
    problems: list[str] = []
    found: set[str] = set()
    data = _interpolate(data, env, "", problems, found)
    secrets = frozenset(found)
    if problems:
        raise ConfigError(_format_errors(path, index, [tuple(p.split(": ", 1)) for p in problems]))  # type: ignore[misc]

    errors: list[tuple[str, str]] = []
    raw_sources = data.get("sources") or []
    if not isinstance(raw_sources, list):
        errors.append(("sources", "expected a list of sources"))
        raw_sources = []
    try:
        model = ConfigModel.model_validate({**data, "sources": []})
    except ValidationError as exc:
        errors.extend(_describe(e, [ConfigModel]) for e in exc.errors())
        model = None

    specs: list[SourceSpec] = []
    seen: dict[str, int] = {}
    default_every = model.every if model else 900.0
    for i, raw in enumerate(raw_sources):
        where = f"sources[{i}]"
        try:
            src = SourceModel.model_validate(raw)
        except ValidationError as exc:
            errors.extend(_within(where, _describe(e, [SourceModel])) for e in exc.errors())
            continue
        if src.name in seen:
            errors.append(
                (f"{where}.name", f"{src.name!r} is already used by sources[{seen[src.name]}]")
            )
        seen[src.name] = i
        if not is_kind(src.kind):
            errors.append(
                (
                    f"{where}.kind",
                    f"unknown kind {src.kind!r}{did_you_mean(src.kind, kind_names())}; "
                    f"known kinds: {', '.join(kind_names())}",
                )
            )
            continue
        extra = dict(src.model_extra or {})
        kind_model = options_model(src.kind)
        try:
            options = kind_model.model_validate(extra)
        except ValidationError as exc:
            errors.extend(
                _within(where, _describe(e, [SourceModel, kind_model])) for e in exc.errors()
            )
            continue
        opts = options.model_dump()
        # Options the kind marks `Secret` are secrets wherever they go, written in the file or not.
        found.update(str(opts[k]) for k in secret_fields(kind_model) if opts.get(k))
        # The spec carries the validated model itself: kinds read it, nothing validates it again.
        url = opts.get("url")
        every = src.every or default_every
        floor = every_floor(url or opts.get("base_url"))
        if every < floor:
            # Polled too often; a global `every:` the source inherits is reported once.
            key = f"{where}.every" if src.every else "every"
            where_s = "on this machine" if floor < MIN_EVERY_S else "on another machine"
            errors.append(
                (
                    key,
                    f"{format_duration(every)} is too often: a source {where_s} is polled at "
                    f"most every {format_duration(floor)}"
                    + ("" if floor < MIN_EVERY_S else " (every 1s when it is on 127.0.0.1)"),
                )
            )
        specs.append(
            SourceSpec(
                name=src.name,
                kind=src.kind,
                every_s=every,
                url=str(url) if url else None,
                enabled=src.enabled,
                follow_threads=src.follow_threads,
                influential=src.influential,
                options=options,
            )
        )
    channels = _channels(model.alerts.channels if model else [], errors)
    secrets = frozenset(found)
    if model is None or channels is None:
        raise ConfigError(_format_errors(path, index, errors), secrets)
    brand_names = [b.name for b in model.brands]
    for i, name in enumerate(brand_names):
        if brand_names.index(name) != i:
            errors.append((f"brands[{i}].name", f"brand {name!r} is listed twice"))
    channel_names = [c.name for c in channels]
    for i, name in enumerate(channel_names):
        if channel_names.index(name) != i:
            errors.append((f"alerts.channels[{i}].name", f"channel {name!r} is listed twice"))
    for rule_name in type(model.alerts.rules).model_fields:
        rule = getattr(model.alerts.rules, rule_name)
        for i, name in enumerate(rule.channels or ()):
            if name not in channel_names:
                errors.append(
                    (f"alerts.rules.{rule_name}.channels[{i}]", f"no alert channel named {name!r}")
                )
    for i, name in enumerate(model.alerts.rules.very_negative_mention.sources):
        if name not in seen:
            errors.append(
                (f"alerts.rules.very_negative_mention.sources[{i}]", f"no source named {name!r}")
            )
    sentiment = _sentiment(model.sentiment, errors)
    if errors or sentiment is None:
        raise ConfigError(_format_errors(path, index, errors), secrets)

    f = model.fetch
    limits = FetchLimits(
        connect_timeout_s=f.connect_timeout,
        read_timeout_s=f.read_timeout,
        total_timeout_s=f.total_timeout,
        poll_budget_s=f.poll_budget,
        max_body_bytes=parse_size(f.max_body),
        max_redirects=f.max_redirects,
        retries=f.retries,
        concurrency=f.concurrency,
        per_host_concurrency=f.per_host,
    )
    database = Path(model.database)
    if not database.is_absolute():
        database = path.parent / database
    return Config(
        path=path,
        database=database,
        brands=tuple(_brand(b) for b in model.brands),
        sources=tuple(specs),
        sentiment=sentiment,
        fetch=limits,
        user_agent=f.user_agent,
        transport=f.transport,
        alerts=AlertSettings(
            channels=tuple(channels),
            rules=_rules(model.alerts.rules),
            flush_every=model.alerts.flush_every,
            retry_first=model.alerts.retry_first,
            retry_max=model.alerts.retry_max,
        ),
        workers=model.workers,
        secrets=secrets,
        raw=data,
        retention=Retention(
            fetches=model.retention.fetches,
            fetches_per_source=model.retention.fetches_per_source,
        ),
        serve_url=model.serve_url,
    )


def _sentiment(model: SentimentModel, errors: list[tuple[str, str]]) -> SentimentConfig | None:
    """The `sentiment:` block as the scorer's own frozen `SentimentConfig`; None (with `errors`
    added) when the scorer refuses a word the YAML allowed (`"great!"` can never match)."""
    try:
        return SentimentConfig(
            positive_threshold=model.positive_threshold,
            negative_threshold=model.negative_threshold,
            lexicon=model.lexicon,
            phrases=model.phrases,
            domain_lexicon=model.domain_lexicon,
        )
    except ValueError as exc:
        # Its messages start with where: "sentiment.lexicon['great!']: ...".
        where, sep, why = str(exc).partition(": ")
        errors.append(
            (where, why) if sep and where.startswith("sentiment") else ("sentiment", str(exc))
        )
        return None


def _channels(raw: Sequence[Any], errors: list[tuple[str, str]]) -> list[Any] | None:
    """Each `alerts.channels` entry validated by its kind's options model and built into the
    plain channel object the outbox sends on; None (with `errors` added) when one is wrong."""
    from .alerts.channels import channel_kind, channel_kind_names

    kinds = ", ".join(channel_kind_names())
    out: list[Any] = []
    ok = True
    for i, value in enumerate(raw):
        where = f"alerts.channels[{i}]"
        if not isinstance(value, dict):
            errors.append(
                (where, f"expected a channel: a mapping with name:, kind: ({kinds}) and its keys")
            )
            ok = False
            continue
        got = value.get("kind")
        if got is None:
            errors.append((f"{where}.kind", f"required key is missing: one of {kinds}"))
            ok = False
            continue
        kind = channel_kind(got) if isinstance(got, str) else None
        if kind is None:
            hint = did_you_mean(got, channel_kind_names()) if isinstance(got, str) else ""
            errors.append(
                (f"{where}.kind", f"unknown channel kind {_short(got)}{hint}; known kinds: {kinds}")
            )
            ok = False
            continue
        try:
            options = kind.options_model.model_validate(value)
        except ValidationError as exc:
            errors.extend(_within(where, _describe(e, [kind.options_model])) for e in exc.errors())
            ok = False
            continue
        out.append(kind.build(options))
    return out if ok else None


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _rules(model: RulesModel) -> Rules:
    """The validated rules as the plain frozen dataclasses of `listener.models`."""
    built: dict[str, Any] = {}
    for rule in fields(Rules):
        cls = rule.default_factory
        given = getattr(model, rule.name)
        built[rule.name] = cls(**{f.name: _plain(getattr(given, f.name)) for f in fields(cls)})  # type: ignore[operator,arg-type]
    return Rules(**built)


def _terms(name: str, terms: Sequence[str], query: str | None) -> tuple[str, ...]:
    """The name is a term too, unless a query stands alone (no `terms:`): then the query decides."""
    if query and not terms:
        return ()
    return tuple(dict.fromkeys([name, *terms]))


def _brand(b: BrandModel) -> Brand:
    return Brand(
        name=b.name,
        terms=_terms(b.name, b.terms, b.query),
        exclude=tuple(b.exclude),
        case_sensitive=b.case_sensitive,
        domains=tuple(b.domains),
        products=tuple(
            Product(name=p.name, terms=_terms(p.name, p.terms, p.query), query=p.query)
            for p in b.products
        ),
        query=b.query,
        accounts=tuple(b.accounts),
    )


def config_path(explicit: str | None) -> Path:
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
