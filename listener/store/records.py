"""The plain records the store takes and hands back for items."""

from __future__ import annotations

from dataclasses import dataclass

from ..models import Item, Mention, Score


@dataclass(frozen=True)
class KnownItem:
    item_id: int
    content_hash: str
    source: str
    relevant: bool


@dataclass(frozen=True)
class ProcessedItem:
    """An item after dedupe lookup, matching and scoring, ready to save."""

    item: Item
    keys: tuple[str, ...]
    content_hash: str
    fingerprint: str | None
    known: KnownItem | None  # the stored item it is (None: new)
    changed: bool  # new, or edited since stored
    relevant: bool  # names a brand, or sits in a brand thread
    score: Score | None  # the whole item's score (relevant items)
    mentions: tuple[Mention, ...]
    # The brand whose own account wrote it (`brands[].accounts`), None for anyone else.
    by_brand: str | None = None


@dataclass(frozen=True)
class SaveResult:
    new_items: int
    updated_items: int
    new_mentions: tuple[Mention, ...]
    threads_touched: tuple[str, ...]
    new_mention_ids: tuple[int, ...] = ()
