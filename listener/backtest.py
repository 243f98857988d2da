"""`listener match --stored`: the brand rules as they are now, over the items already stored.

Each stored item is matched again with the current rules and compared with the mentions stored
for it: a brand the rules now name that has no stored mention is an *add*, a stored mention the
rules no longer make is a *drop*. Counts per brand and a few examples of each, with why, so a
rule change can be judged before it goes live. Nothing is written.

`apply_rules` (`listener match --stored --apply`) then makes it so: each add becomes a mention
scored as a poll scores it (language, sentiment, intents), each drop is marked not relevant (kept,
with any correction, out of counts, views and alerts; a user can mark it relevant again). No alert
is sent for what it adds: these are old posts.

Items that named no brand when they were polled were stored without their text (only the title):
those are matched on their title alone, and the report says how many there were.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from .analyse import score_matches
from .match import Matcher, explain_item, item_text
from .models import Item, Mention
from .sentiment import Scorer
from .store import ProcessedItem, Store

log = logging.getLogger(__name__)


@dataclass
class BrandDiff:
    stored: int = 0  # stored mentions of the brand among the items looked at
    kept: int = 0
    added: int = 0
    dropped: int = 0
    dropped_not_relevant: int = 0  # drops a user had already marked not relevant
    add_examples: list[dict[str, Any]] = field(default_factory=list)
    drop_examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Backtest:
    items: int = 0
    title_only: int = 0  # items whose text was not stored
    brands: dict[str, BrandDiff] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "title_only": self.title_only,
            "brands": {name: vars(diff) for name, diff in self.brands.items()},
        }


def backtest(
    store: Store, matcher: Matcher, *, since: datetime | None = None, examples: int = 3
) -> Backtest:
    """Compare what the current rules find in stored items with the stored mentions."""
    result = Backtest()
    for name in matcher.brand_names:
        result.brands[name] = BrandDiff()
    for row in store.stored_items(since):
        result.items += 1
        if row["text"] is None:
            result.title_only += 1
        item = stored_item(row)
        now = {m.brand for m in matcher.match_item(item)}
        stored: dict[str, bool] = row["mentions"]
        if now == set(stored):
            for brand in now:
                diff = result.brands.setdefault(brand, BrandDiff())
                diff.stored += 1
                diff.kept += 1
            continue
        explained = explain_item(matcher, item)
        for brand in now | set(stored):
            diff = result.brands.setdefault(brand, BrandDiff())
            diff.stored += brand in stored
            if brand in now and brand in stored:
                diff.kept += 1
            elif brand in now:
                diff.added += 1
                if len(diff.add_examples) < examples:
                    mention = next(m for m in explained["mentions"] if m["brand"] == brand)
                    diff.add_examples.append(_example(row, mention["snippet"], mention["why"]))
            else:
                diff.dropped += 1
                diff.dropped_not_relevant += stored[brand]
                if len(diff.drop_examples) < examples:
                    why = next(
                        (w["why"] for w in explained.get("why_not", ()) if w["brand"] == brand),
                        "no term or query word of the brand is found",
                    )
                    text = item_text(item)
                    diff.drop_examples.append(_example(row, " ".join(text.split())[:200], why))
    log.info("backtest over %d items (%d title only)", result.items, result.title_only)
    return result


@dataclass
class Applied:
    items: int = 0  # items looked at
    added: dict[str, int] = field(default_factory=dict)  # brand -> mentions added
    dropped: dict[str, int] = field(default_factory=dict)  # brand -> mentions marked not relevant

    def as_dict(self) -> dict[str, Any]:
        return {"items": self.items, "added": self.added, "dropped": self.dropped}


def stored_item(row: dict[str, Any]) -> Item:
    """A stored item as the matcher and the scorer see it (its stored language as the source's)."""
    return Item(
        source=row["source"],
        native_id=None,
        url=row["url"],
        title=row["title"],
        text=row["text"] or "",
        author=row["author"],
        published_at=row.get("published_at"),
        thread_key=row.get("thread_key") or "",
        parent_key=row.get("parent_key"),
        is_reply=bool(row.get("is_reply")),
        extra={"lang": row["lang"]} if row.get("lang") else {},
    )


def apply_rules(
    store: Store,
    matcher: Matcher,
    scorer: Scorer,
    *,
    since: datetime | None = None,
    now: datetime | None = None,
) -> Applied:
    """Apply the rules as they are now to the stored items: add the mentions they now make,
    scored as a poll would, and mark not relevant the stored mentions they no longer make
    (mentions already marked not relevant are left as they are)."""
    now = now or datetime.now(UTC)
    result = Applied()
    kinds = store.source_kinds()
    with store.transaction():
        for row in list(store.stored_items(since)):
            result.items += 1
            item = stored_item(row)
            matches = matcher.match_item(item)
            stored: dict[str, bool] = row["mentions"]
            found = {m.brand for m in matches}
            adds = found - set(stored)
            drops = [b for b, not_relevant in stored.items() if b not in found and not not_relevant]
            if not adds and not drops:
                continue
            mentions: tuple[Mention, ...] = ()
            item_score = None
            if adds:
                analysis = score_matches(item, matches, matcher, scorer, in_brand_thread=True)
                if analysis.lang:
                    item = replace(item, extra={**item.extra, "lang": analysis.lang})
                item_score = analysis.item_score
                mentions = tuple(
                    Mention(
                        item=item,
                        brand=ms.match.brand,
                        product=ms.match.product,
                        terms=ms.match.terms,
                        snippet=ms.snippet,
                        score=ms.score,
                        item_score=item_score,
                        lexicon_version=analysis.lexicon_version,
                    )
                    for ms in analysis.mentions
                    if ms.match.brand in adds
                )
            p = ProcessedItem(item, (), "", None, None, True, True, item_score, mentions)
            store.apply_rules(row["id"], p, kinds.get(item.source, ""), drops, now)
            for m in mentions:
                result.added[m.brand] = result.added.get(m.brand, 0) + 1
            for brand in drops:
                result.dropped[brand] = result.dropped.get(brand, 0) + 1
    log.info(
        "applied the rules to %d items: %d mentions added, %d marked not relevant",
        result.items,
        sum(result.added.values()),
        sum(result.dropped.values()),
    )
    return result


def _example(row: dict[str, Any], snippet: str, why: str) -> dict[str, Any]:
    return {
        "item_id": row["id"],
        "url": row["url"],
        "title": row["title"],
        "snippet": snippet,
        "why": why,
    }
