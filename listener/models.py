"""Plain data that flows through one poll: config objects, fetched responses, items, mentions.

Everything here is a frozen dataclass with no behaviour beyond small derived properties, so every
stage of the pipeline is a plain function over these values and easy to test on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Label = Literal["positive", "neutral", "negative", "unscored"]  # unscored: a language not read


@dataclass(frozen=True)
class Product:
    name: str
    terms: tuple[str, ...]
    query: str | None = None  # a boolean query (listener.query); with terms, both must hold


@dataclass(frozen=True)
class Brand:
    name: str
    terms: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    case_sensitive: bool = False
    products: tuple[Product, ...] = ()
    # Bare domains ("acme.com"): a link to them or a mention of them counts as a mention.
    domains: tuple[str, ...] = ()
    # A boolean query (listener.query): alone, it makes a mention; with terms, both must hold.
    query: str | None = None
    # The brand's own voices (display names, handles as each platform shows them): their posts
    # are the brand's replies, not customer mentions (`mentions.by_brand`).
    accounts: tuple[str, ...] = ()


# A conversation's triage state (`threads.status`), set by the team.
THREAD_STATUSES = ("new", "acknowledged", "resolved", "ignored")


@dataclass(frozen=True)
class SourceSpec:
    """One entry of `sources:` in sources.yaml, validated.

    `options` is the kind's own options model (a frozen `sources.base.KindOptions`: query,
    subreddit, base_url, tag, token, ...), validated once by config, with `${ENV}` secrets
    interpolated; kinds read it as it is (`sources.base.load_options` hands it back typed). A
    spec built by hand may carry a plain mapping, validated when the kind reads it.
    """

    name: str
    kind: str
    every_s: float
    url: str | None = None
    enabled: bool = True
    follow_threads: bool = True
    influential: bool = False
    # May hold secrets (tokens, app passwords): never in a repr or a log line.
    options: Any = field(default_factory=dict, hash=False, compare=False, repr=False)


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    total_timeout_s: float = 60.0
    # One source poll's network time, all its requests together (see `listener.fetch.PollBudget`).
    poll_budget_s: float = 90.0
    max_body_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 5
    retries: int = 2
    backoff_s: float = 0.5
    max_retry_after_s: float = 120.0
    per_host_concurrency: int = 8
    concurrency: int = 32


@dataclass(frozen=True)
class Validators:
    """What a conditional GET needs, kept per source (per URL) in the database."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class SourceState:
    """Where the last poll of a source got to, as kept in the database (`Store.load_source_state`)."""

    validators: Validators = field(default_factory=Validators)
    body_hash: str | None = None
    cursor: dict[str, Any] = field(default_factory=dict)
    consecutive_failures: int = 0


@dataclass(frozen=True)
class Response:
    """The outcome of one fetch. `error` is set when there is no usable body."""

    url: str  # the URL asked for
    final_url: str  # after redirects
    status: int  # 0 when no HTTP status was received
    headers: dict[str, str]  # lower-case names
    body: bytes
    validators: Validators
    duration_ms: float
    attempts: int = 1
    error: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def ok(self) -> bool:
        return self.error is None and (200 <= self.status < 300 or self.status == 304)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


@dataclass(frozen=True)
class Item:
    """One post, comment or article, normalised: plain text, canonical URL, UTC times."""

    source: str
    native_id: str | None  # guid / id / API id as given by the source
    url: str  # canonical
    title: str
    text: str  # plain text, HTML removed
    author: str | None = None
    published_at: datetime | None = None  # UTC
    updated_at: datetime | None = None  # UTC
    thread_key: str = ""  # the conversation this item belongs to
    parent_key: str | None = None  # the item it replies to, where known
    is_reply: bool = False
    thread_url: str | None = None  # where the thread's replies can be read (comments feed, ...)
    raw_url: str | None = None  # the link as the source gave it
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Match:
    """One brand (and optionally product) found in an item's text."""

    brand: str
    product: str | None
    terms: tuple[str, ...]  # the distinct terms as they appeared
    spans: tuple[tuple[int, int], ...]  # character offsets in the text searched


@dataclass(frozen=True)
class Score:
    compound: float
    pos: float
    neu: float
    neg: float
    label: Label
    # Which words and rules moved the score: [{"word": ..., "valence": ..., "rule": ...}, ...]
    explanation: tuple[dict[str, Any], ...] = ()
    # What the author means toward the brand, most important first (listener.intent.INTENTS).
    intents: tuple[str, ...] = ()


@dataclass(frozen=True)
class Mention:
    item: Item
    brand: str
    product: str | None
    terms: tuple[str, ...]
    snippet: str
    score: Score
    item_score: Score | None = None
    # The scorer's lexicon version that gave `score` (`mentions.lexicon_version`): what
    # `listener rescore` compares to know which mentions a lexicon change left stale.
    lexicon_version: str | None = None


@dataclass(frozen=True)
class SourcePoll:
    """What a source kind returns for one poll: items plus the state to keep for next time."""

    items: list[Item]
    responses: list[Response]  # every HTTP exchange made, for the fetch log
    cursor: dict[str, Any] | None = None  # kind-specific resume point; None = unchanged
    validators: Validators | None = None  # for the source's main URL; None = unchanged
    body_hash: str | None = None  # hash of the main body, to skip re-parsing an unchanged one
    error: str | None = None  # set when the poll failed as a whole
    not_modified: bool = False
    # What the user should know about a poll that worked (a feed cut to its first entries): kept
    # on the source (`sources.last_note`, shown by `status`) until a later poll reads it anew.
    note: str | None = None


# The key under which every source kind keeps the title of the conversation a reply belongs to
# (`listener.sources.base.with_thread_title`).
THREAD_TITLE_KEY = "thread_title"


def thread_title(item: Item) -> str:
    """A reply's own title, else the title of the conversation it belongs to."""
    if item.title:
        return item.title
    return str(item.extra.get(THREAD_TITLE_KEY) or "")


# --- alert settings: what `alerts:` in sources.yaml says, validated by config ------------------
# The rules' defaults are these; `listener.config` validates the YAML (bounds, durations) and
# hands the values over. `channels` is None on a rule: every configured channel.


@dataclass(frozen=True)
class NegativeThreadRule:
    enabled: bool = True
    channels: tuple[str, ...] | None = None
    min_negative: int = 3  # negative posts within `window` ...
    window: float = 24 * 3600.0
    mean_at_most: float = -0.3  # ... or a mean compound this low ...
    min_posts: int = 3  # ... over at least this many posts
    escalate_every: int = 3  # a new level every N more negative posts
    cooldown: float = 3600.0


@dataclass(frozen=True)
class ChurnRiskRule:
    enabled: bool = True
    channels: tuple[str, ...] | None = None


@dataclass(frozen=True)
class UnansweredNegativeRule:
    enabled: bool = True
    channels: tuple[str, ...] | None = None
    after: float = 4 * 3600.0
    min_negative: int = 1


@dataclass(frozen=True)
class VeryNegativeMentionRule:
    enabled: bool = True
    channels: tuple[str, ...] | None = None
    compound_at_most: float = -0.75
    sources: tuple[str, ...] = ()  # besides sources marked influential
    cooldown: float = 0.0


@dataclass(frozen=True)
class SpikeRule:
    enabled: bool = True
    channels: tuple[str, ...] | None = None
    window: float = 3600.0
    baseline: float = 7 * 86400.0
    k: float = 3.0
    min_count: int = 5
    cooldown: float = 6 * 3600.0


@dataclass(frozen=True)
class SourceHealthRule:
    enabled: bool = True
    channels: tuple[str, ...] | None = None
    failures: int = 5
    stale_factor: float = 10.0
    stale_min: float = 6 * 3600.0


@dataclass(frozen=True)
class Rules:
    negative_thread: NegativeThreadRule = field(default_factory=NegativeThreadRule)
    churn_risk: ChurnRiskRule = field(default_factory=ChurnRiskRule)
    unanswered_negative: UnansweredNegativeRule = field(default_factory=UnansweredNegativeRule)
    very_negative_mention: VeryNegativeMentionRule = field(default_factory=VeryNegativeMentionRule)
    spike: SpikeRule = field(default_factory=SpikeRule)
    source_health: SourceHealthRule = field(default_factory=SourceHealthRule)


@dataclass(frozen=True)
class AlertSettings:
    # The channel objects the channel registry (`listener.alerts.channels`) built from the
    # validated options: each has `name`, `kind` and `digest`.
    channels: tuple[Any, ...] = ()
    rules: Rules = field(default_factory=Rules)
    # How often the outbox is looked at, and how retries of an undelivered alert back off.
    flush_every: float = 15.0
    retry_first: float = 30.0
    retry_max: float = 3600.0


@dataclass(frozen=True)
class Retention:
    """How long the fetch log (table `fetches`) is kept: rows older than `fetches` seconds, and
    beyond the newest `fetches_per_source` of a source, are deleted. 0 turns either limit off."""

    fetches: float = 30 * 86400.0
    fetches_per_source: int = 2000
