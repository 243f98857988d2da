"""Load and validate `sources.yaml` into typed, frozen objects.

Validation happens once, here, at the edge: unknown keys are rejected with their place
(`sources[3].evry`), `${VAR}` references are filled from the environment (a missing variable is
an error that names it), durations such as `15m` are parsed, and every error message carries the
file, the line and the key so a person can fix it without reading code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .models import Brand, FetchLimits, Product, SourceSpec

DEFAULT_CONFIG = "sources.yaml"
# libyaml's parser when PyYAML was built with it: 8x faster on a config with 1,000 sources.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
CONFIG_ENV = "LISTENER_CONFIG"


class ConfigError(Exception):
    """A config problem a person must fix; `str()` says where and what."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# --- durations and environment -------------------------------------------------------------

_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*(ms|[smhdw]))+\s*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|[smhdw])")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> float:
    """`15m`, `1h30m`, `90s`, `2d`, `500ms`, or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 15m, 1h or 90s")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION_RE.match(value):
        seconds = sum(float(n) * _UNIT_S[u] for n, u in _DURATION_PART.findall(value))
    else:
        raise ValueError(f"{value!r} is not a duration: use e.g. 30s, 15m, 1h30m, 2d")
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    return seconds


def format_duration(seconds: float) -> str:
    for unit in ("w", "d", "h", "m"):
        size = _UNIT_S[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, env: Mapping[str, str], path: str, problems: list[str]) -> Any:
    if isinstance(value, str):

        def replace(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(f"{path}: environment variable {name} is not set")
            return ""

        return _ENV_RE.sub(replace, value)
    if isinstance(value, dict):
        return {
            k: _interpolate(v, env, f"{path}.{k}" if path else str(k), problems)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, env, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    return value


Duration = float


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _duration_field(v: Any) -> float:
    return parse_duration(v)


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

    _lists = field_validator("terms", "exclude", "domains", mode="before")(_str_list)
    _query = field_validator("query")(_query)

    @field_validator("terms", "exclude", "domains")
    @classmethod
    def _no_blank(cls, v: list[str]) -> list[str]:
        if any(not t.strip() for t in v):
            raise ValueError("terms must not be empty strings")
        return v


# --- sources -------------------------------------------------------------------------------


class SourceModel(BaseModel):
    """The keys every source has; kind-specific keys are checked by the kind's own model."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]*$")
    kind: str = "feed"
    every: float | None = None
    enabled: bool = True
    follow_threads: bool = True
    influential: bool = False

    _every = field_validator("every", mode="before")(
        lambda v: None if v is None else parse_duration(v)
    )


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


class FetchModel(_Strict):
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    total_timeout: float = 60.0
    max_body: str | int = "20MB"
    max_redirects: int = Field(5, ge=0, le=30)
    retries: int = Field(2, ge=0, le=10)
    concurrency: int = Field(32, ge=1, le=512)
    per_host: int = Field(8, ge=1, le=128)
    user_agent: str | None = None
    transport: Literal["aiohttp", "httpx"] = "aiohttp"

    _t = field_validator("connect_timeout", "read_timeout", "total_timeout", mode="before")(
        _duration_field
    )

    @field_validator("max_body")
    @classmethod
    def _size(cls, v: str | int) -> int:
        return parse_size(v)


def parse_size(v: str | int) -> int:
    if isinstance(v, int):
        return v
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", v, re.I)
    if not m:
        raise ValueError(f"{v!r} is not a size: use e.g. 20MB or 512KB")
    number, unit = float(m.group(1)), (m.group(2) or "B").upper().replace("I", "")
    return int(number * {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}[unit])


# --- alerts --------------------------------------------------------------------------------

Digest = Literal["hourly", "daily"] | None


class SlackChannelModel(_Strict):
    name: str
    kind: Literal["slack"]
    webhook_url: str = Field(pattern=r"^https?://")
    digest: Digest = None


class EmailChannelModel(_Strict):
    name: str
    kind: Literal["email"]
    host: str
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password: str | None = None
    from_: str = Field(alias="from", pattern=r"^[^@\s]+@[^@\s]+$")
    to: list[str] = Field(min_length=1)
    digest: Digest = None

    _to = field_validator("to", mode="before")(_str_list)

    @model_validator(mode="after")
    def _tls(self) -> EmailChannelModel:
        if self.ssl and self.starttls:
            raise ValueError("choose one of ssl (implicit TLS, port 465) and starttls (port 587)")
        return self


class WebhookChannelModel(_Strict):
    name: str
    kind: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    digest: Digest = None


ChannelModel = SlackChannelModel | EmailChannelModel | WebhookChannelModel


class NegativeThreadRule(_Strict):
    enabled: bool = True
    min_negative: int = Field(3, ge=1)  # negative posts within `window` ...
    window: float = 24 * 3600.0
    mean_at_most: float = Field(-0.3, ge=-1, le=1)  # ... or a mean compound this low ...
    min_posts: int = Field(3, ge=1)  # ... over at least this many posts
    escalate_every: int = Field(3, ge=1)  # a new level every N more negative posts
    cooldown: float = 3600.0

    _d = field_validator("window", "cooldown", mode="before")(_duration_field)


class VeryNegativeMentionRule(_Strict):
    enabled: bool = True
    compound_at_most: float = Field(-0.75, ge=-1, le=0)
    sources: list[str] = Field(default_factory=list)  # besides sources marked influential
    cooldown: float = 0.0

    _d = field_validator("cooldown", mode="before")(
        lambda v: 0.0 if v in (0, "0") else parse_duration(v)
    )


class SpikeRule(_Strict):
    enabled: bool = True
    window: float = 3600.0
    baseline: float = 7 * 86400.0
    k: float = Field(3.0, gt=0)
    min_count: int = Field(5, ge=1)
    cooldown: float = 6 * 3600.0

    _d = field_validator("window", "baseline", "cooldown", mode="before")(_duration_field)


class SourceHealthRule(_Strict):
    enabled: bool = True
    failures: int = Field(5, ge=1)


class RulesModel(_Strict):
    negative_thread: NegativeThreadRule = Field(default_factory=NegativeThreadRule)
    very_negative_mention: VeryNegativeMentionRule = Field(default_factory=VeryNegativeMentionRule)
    spike: SpikeRule = Field(default_factory=SpikeRule)
    source_health: SourceHealthRule = Field(default_factory=SourceHealthRule)


class AlertsModel(_Strict):
    channels: list[ChannelModel] = Field(default_factory=list)
    rules: RulesModel = Field(default_factory=RulesModel)
    # How often the outbox is looked at, and how retries of an undelivered alert back off.
    flush_every: float = 15.0
    retry_first: float = 30.0
    retry_max: float = 3600.0

    _d = field_validator("flush_every", "retry_first", "retry_max", mode="before")(_duration_field)

    @field_validator("channels", mode="before")
    @classmethod
    def _kinds(cls, v: Any) -> Any:
        if isinstance(v, list):
            for i, ch in enumerate(v):
                if isinstance(ch, dict) and ch.get("kind") not in ("slack", "email", "webhook"):
                    raise ValueError(
                        f"channels[{i}].kind must be one of slack, email, webhook (got {ch.get('kind')!r})"
                    )
        return v


class ConfigModel(_Strict):
    database: str = "mentions.db"
    # Processes that parse and score in parallel; default: one per core for polls of 50+ sources.
    workers: int | None = Field(None, ge=0, le=64)
    every: float = 900.0  # default polling interval
    brands: list[BrandModel] = Field(min_length=1)
    sources: list[SourceModel] = Field(default_factory=list)
    sentiment: SentimentModel = Field(default_factory=SentimentModel)
    fetch: FetchModel = Field(default_factory=FetchModel)
    alerts: AlertsModel = Field(default_factory=AlertsModel)

    _every = field_validator("every", mode="before")(_duration_field)


# --- the validated config ------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    path: Path
    database: Path
    brands: tuple[Brand, ...]
    sources: tuple[SourceSpec, ...]
    sentiment: SentimentModel
    fetch: FetchLimits
    user_agent: str | None
    transport: str
    alerts: AlertsModel
    workers: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

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


def _describe(err: Mapping[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _format_errors(
    path: Path, index: Mapping[str, int], errors: Sequence[tuple[str, str]]
) -> list[str]:
    out = []
    for key, message in errors:
        line = _line_for(index, key)
        where = f"{path}:{line}" if line else str(path)
        out.append(f"{where}: {key or '(top level)'}: {message}")
    return out


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate a config file. Raises ConfigError with located messages."""
    from .sources import is_kind, kind_names, options_model  # kinds register their option models

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
    try:
        data = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: not valid YAML: {problem}"]) from None
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping with `brands:` and `sources:` at the top"])

    # Where each key stands in the file: only worked out when there is an error to place.
    index = _LazyIndex(text)
    problems: list[str] = []
    data = _interpolate(data, env, "", problems)
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
        errors.extend((_loc(e["loc"]), _describe(e)) for e in exc.errors())
        model = None

    specs: list[SourceSpec] = []
    seen: dict[str, int] = {}
    default_every = model.every if model else 900.0
    for i, raw in enumerate(raw_sources):
        where = f"sources[{i}]"
        try:
            src = SourceModel.model_validate(raw)
        except ValidationError as exc:
            errors.extend(
                (f"{where}.{_loc(e['loc'])}".rstrip("."), _describe(e)) for e in exc.errors()
            )
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
                    f"unknown kind {src.kind!r}; known kinds: {', '.join(kind_names())}",
                )
            )
            continue
        extra = dict(src.model_extra or {})
        try:
            options = options_model(src.kind).model_validate(extra)
        except ValidationError as exc:
            errors.extend(
                (f"{where}.{_loc(e['loc'])}".rstrip("."), _describe(e)) for e in exc.errors()
            )
            continue
        opts = options.model_dump()
        url = opts.get("url")
        specs.append(
            SourceSpec(
                name=src.name,
                kind=src.kind,
                every_s=src.every or default_every,
                url=str(url) if url else None,
                enabled=src.enabled,
                follow_threads=src.follow_threads,
                influential=src.influential,
                options=opts,
            )
        )
    if model is None:
        raise ConfigError(_format_errors(path, index, errors))
    brand_names = [b.name for b in model.brands]
    for i, name in enumerate(brand_names):
        if brand_names.index(name) != i:
            errors.append((f"brands[{i}].name", f"brand {name!r} is listed twice"))
    channel_names = [c.name for c in model.alerts.channels]
    for i, name in enumerate(channel_names):
        if channel_names.index(name) != i:
            errors.append((f"alerts.channels[{i}].name", f"channel {name!r} is listed twice"))
    for i, name in enumerate(model.alerts.rules.very_negative_mention.sources):
        if name not in seen:
            errors.append(
                (f"alerts.rules.very_negative_mention.sources[{i}]", f"no source named {name!r}")
            )
    if errors:
        raise ConfigError(_format_errors(path, index, errors))

    f = model.fetch
    limits = FetchLimits(
        connect_timeout_s=f.connect_timeout,
        read_timeout_s=f.read_timeout,
        total_timeout_s=f.total_timeout,
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
        sentiment=model.sentiment,
        fetch=limits,
        user_agent=f.user_agent,
        transport=f.transport,
        alerts=model.alerts,
        workers=model.workers,
        raw=data,
    )


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
    )


def config_path(explicit: str | None) -> Path:
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
