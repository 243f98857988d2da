"""`listener match --stored`: the brand rules as they are now, over the items already stored.

Each stored item is matched again with the current rules and compared with the mentions stored
for it: a brand the rules now name that has no stored mention is an *add*, a stored mention the
rules no longer make is a *drop*. Counts per brand and a few examples of each, with why, so a
rule change can be judged before it goes live. Nothing is written.

Items that named no brand when they were polled were stored without their text (only the title):
those are matched on their title alone, and the report says how many there were.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .match import Matcher, explain_item, item_text
from .models import Item
from .store import Store

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
        item = Item(
            source=row["source"],
            native_id=None,
            url=row["url"],
            title=row["title"],
            text=row["text"] or "",
            author=row["author"],
        )
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


def _example(row: dict[str, Any], snippet: str, why: str) -> dict[str, Any]:
    return {
        "item_id": row["id"],
        "url": row["url"],
        "title": row["title"],
        "snippet": snippet,
        "why": why,
    }
