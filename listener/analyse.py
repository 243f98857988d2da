"""The CPU side of a poll: identify items, find the brands they name, score them.

Pure functions over items, a compiled `Matcher` and a `Scorer`: no database, no network, so they
run the same in the polling process or in a worker process (`listener.workers`). The pipeline
decides, with the database, which items are new or edited; only those are matched and scored.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from .lang import item_language, scored
from .match import Matcher, snippet_around
from .models import Brand, Item, Match, Score
from .sentiment import Scorer, score_in
from .text import content_fingerprint, content_hash, split_sentences, url_identity

# Whole-item scores read at most this much text: a long article's tone is set early, and
# VADER's cost grows with length.
ITEM_SCORE_CHARS = 1500
# Texts shorter than this are too generic ("Thanks!", "+1") to identify a story by content.
FINGERPRINT_MIN_CHARS = 200


@dataclass(frozen=True)
class Identity:
    keys: tuple[str, ...]  # strongest first: id:, url:, fp:
    content_hash: str
    fingerprint: str | None


@dataclass(frozen=True)
class MentionScore:
    match: Match
    snippet: str
    score: Score


@dataclass(frozen=True)
class Analysis:
    """What the CPU side found in one item."""

    mentions: tuple[MentionScore, ...]
    item_score: Score | None  # set when the item names a brand or sits in a brand thread
    lang: str | None = None  # given by the source or detected (scored items); None: unknown
    # The lexicon version of the scorer that made these scores (None: nothing was scored), so
    # a score read in a worker process is stored with the version it was made with.
    lexicon_version: str | None = None


def identity_keys(item: Item) -> tuple[str, ...]:
    """Every identity an item is known by, strongest first."""
    keys = []
    if item.native_id:
        keys.append(f"id:{item.source}:{item.native_id}")
    fragment = item.raw_url.partition("#")[2] if item.raw_url else ""
    if item.url and not fragment:
        keys.append(f"url:{url_identity(item.url)}")
    elif item.url and not item.native_id:
        # A comment known only by its link: the anchor is what tells it from its post.
        keys.append(f"url:{url_identity(item.url)}#{fragment}")
    if len(item.text) >= FINGERPRINT_MIN_CHARS:
        keys.append(f"fp:{content_fingerprint(item.title, item.text)}")
    return tuple(keys)


def identify(item: Item) -> Identity:
    keys = identity_keys(item)
    fp = next((k[3:] for k in keys if k.startswith("fp:")), None)
    return Identity(keys, content_hash(item.title, item.text), fp)


def item_text(item: Item) -> str:
    return f"{item.title}\n{item.text}" if item.title else item.text


# ---------------------------------------------------------------------------------------------
# The brand's own voice: posts by one of its `accounts:`
# ---------------------------------------------------------------------------------------------

# How platforms prefix a handle: "@acme", "u/acme", "/u/acme", "/user/acme".
_HANDLE_PREFIX = re.compile(r"^(?:@|/?u/|/?user/)", re.IGNORECASE)
# "support@acme.com (Acme Support)", "Acme Support <support@acme.com>": an RSS author.
_AUTHOR_PARTS = re.compile(r"^(.*?)\s*[(<]\s*([^()<>]*?)\s*[)>]\s*$")


def account_key(name: str) -> str:
    """How an account is compared: case-folded, whitespace collapsed, without the prefix a
    platform shows before a handle (`@acme@mastodon.social` and `acme@mastodon.social`,
    `u/acme_official` and `/u/acme_official`, `@acme.bsky.social` and `acme.bsky.social`)."""
    key = " ".join(name.casefold().split())
    return _HANDLE_PREFIX.sub("", key, count=1).strip()


def brand_accounts(brands: Iterable[Brand]) -> dict[str, str]:
    """Each brand account's `account_key` -> the brand's name (the first brand that lists it)."""
    out: dict[str, str] = {}
    for brand in brands:
        for account in brand.accounts:
            key = account_key(account)
            if key:
                out.setdefault(key, brand.name)
    return out


def author_brand(author: str | None, accounts: Mapping[str, str]) -> str | None:
    """The brand whose own account wrote a post (`brand_accounts`), or None for anyone else.

    The author matches as a whole, or by either part of an RSS author written
    `email (Name)` / `Name <email>`.
    """
    if not author or not accounts:
        return None
    forms = [author]
    parts = _AUTHOR_PARTS.match(author)
    if parts is not None:
        forms.extend(parts.groups())
    for form in forms:
        brand = accounts.get(account_key(form)) if form else None
        if brand is not None:
            return brand
    return None


def brand_voice(score: Score) -> Score:
    """A score as the brand's own account's post carries it: the same sentiment, no customer
    intent (a brand announcing a price change or answering "how do I cancel?" is not churn,
    a complaint or a question of a customer), and no intent words in its explanation."""
    if not score.intents and not any(e.get("rule") == "intent" for e in score.explanation):
        return score
    explanation = tuple(e for e in score.explanation if e.get("rule") != "intent")
    note = {"rule": "brand voice", "effect": "the brand's own account: no customer intent"}
    return replace(score, intents=(), explanation=(*explanation, note))


def score_matches(
    item: Item, matches: Sequence[Match], matcher: Matcher, scorer: Scorer, *, in_brand_thread: bool
) -> Analysis:
    """Score each brand an item names on the sentences around it, and the item as a whole."""
    if not matches and not in_brand_thread:
        return Analysis((), None)
    text = item_text(item)
    terms = {m.brand: matcher.neutral_terms(m.brand) for m in matches}
    all_terms = [t for brand_terms in terms.values() for t in brand_terms]
    # Detected only here, for items that name a brand or sit in a brand thread.
    lang = item_language(item, text, all_terms)
    # The post's own words: a reply's "Re: <topic>" title is its thread's, not what it says.
    own = item.text if _reply_title(item) else text
    whole = own[:ITEM_SCORE_CHARS]
    texts = [mention_text(item, text, m.spans) for m in matches]
    if len(matches) == 1 and scored(lang) and texts[0] == whole:
        # One brand, named from the start (often in the title): the item as a whole and the
        # mention are the same words, read once.
        m = matches[0]
        toward, item_score = scorer.score_both(whole, neutralise=terms[m.brand])
        mention = MentionScore(m, snippet_around(text, m.spans), toward)
        return Analysis((mention,), item_score, lang, scorer.lexicon_version)
    # The item's score and each mention's read mostly the same sentences: each is read once.
    with scorer.sharing():
        item_score = score_in(scorer, whole, lang, neutralise=all_terms, toward=False)
        mentions = tuple(
            MentionScore(
                m,
                snippet_around(text, m.spans),
                score_in(
                    scorer,
                    words,
                    lang,
                    neutralise=terms[m.brand],
                    others=[t for brand, ts in terms.items() if brand != m.brand for t in ts],
                ),
            )
            for m, words in zip(matches, texts, strict=True)
        )
    return Analysis(mentions, item_score, lang, scorer.lexicon_version)


def _reply_title(item: Item) -> bool:
    return bool(item.title) and item.title[:3].lower() == "re:" and bool(item.text.strip())


def mention_text(item: Item, text: str, spans: Sequence[tuple[int, int]]) -> str:
    """What a mention is scored on: from the sentence first naming the brand on (what follows
    it is about it too: "Cancelled Acme. Moving to Globex."), after the title (a review's stars
    and verdict), at most ITEM_SCORE_CHARS. The scorer then keeps what is about this brand where
    others are named too."""
    title = item.title
    if title and title[:3].lower() == "re:" and text.startswith(title):
        # A reply's title is its thread's ("Re: Is Acme down?"): not the reply's own words.
        cut = len(title) + 1
        text = text[cut:]
        spans = [(a - cut, b - cut) for a, b in spans if a >= cut]
        title = ""
    if not spans:
        return text[:ITEM_SCORE_CHARS]
    at = min(spans)[0]
    start = next((s for s, e in split_sentences(text) if s <= at < e), at)
    head = ""
    if title and start > len(title):
        head = title + "\n"
    return head + text[start : start + ITEM_SCORE_CHARS]


def analyse_items(
    items: Sequence[Item],
    matcher: Matcher,
    scorer: Scorer,
    *,
    skip_hashes: Collection[str] = (),
    brand_threads: Collection[str] = (),
    identities: Sequence[Identity] | None = None,
) -> list[tuple[Identity, Analysis | None]]:
    """Identify every item; match and score those whose content is not in `skip_hashes`.

    An item that names no brand is scored as context when its thread is in `brand_threads` or
    is named by another item of the batch (a reply can come before its root).
    """
    if identities is None:
        identities = [identify(it) for it in items]
    matched: list[list[Match] | None] = []
    threads = set(brand_threads)
    for item, ident in zip(items, identities, strict=True):
        if ident.content_hash in skip_hashes:
            matched.append(None)
            continue
        found = matcher.match_item(item)
        if found and item.thread_key:
            threads.add(item.thread_key)
        matched.append(found)
    out: list[tuple[Identity, Analysis | None]] = []
    for item, ident, hits in zip(items, identities, matched, strict=True):
        if hits is None:
            out.append((ident, None))
            continue
        in_thread = bool(item.thread_key) and item.thread_key in threads
        out.append((ident, score_matches(item, hits, matcher, scorer, in_brand_thread=in_thread)))
    return out
