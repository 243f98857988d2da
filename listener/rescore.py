"""Re-score stored items and mentions with the current scorer (after a lexicon or threshold change).

Each relevant item's stored text is matched again and scored exactly as a poll scores it
(`listener.analyse.score_matches`): each mention on the sentences around its brand, the item as a
whole, and replies kept as thread context as a whole. A user's correction (`label_override`) is
kept as set, so only the scorer's own label (`auto_label`) moves under it.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from .analyse import brand_voice, score_matches
from .match import Matcher
from .models import Item
from .sentiment import Scorer
from .store import Store

log = logging.getLogger(__name__)


@dataclass
class RescoreResult:
    rescored: int = 0  # mentions
    changed: int = 0  # effective mention labels that changed
    corrected_kept: int = 0
    items: int = 0  # items re-scored (mentions' items and thread-context replies)
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)


def rescore_mentions(
    store: Store, scorer: Scorer, matcher: Matcher, *, everything: bool = False
) -> RescoreResult:
    """Re-score when any mention was scored with another lexicon (or always, `everything`)."""
    result = RescoreResult()
    if not everything and not store.stale_mentions(scorer.lexicon_version):
        return result
    items = store.relevant_texts()
    threads: set[str] = set()
    with store.transaction():
        for item_id, source, title, text, thread_key, url, author, lang in items:
            item = Item(
                source=source,
                native_id=None,
                url=url or "",
                title=title or "",
                text=text,
                author=author,
                extra={"lang": lang} if lang else {},  # the source's, or detected before
            )
            mentions = store.item_mentions(item_id)
            matches = matcher.match_item(item)
            stored_brands = {brand for _, brand, _, _, _ in mentions}
            analysis = score_matches(
                item,
                [m for m in matches if m.brand in stored_brands],
                matcher,
                scorer,
                in_brand_thread=True,
            )
            by_brand = {ms.match.brand: ms.score for ms in analysis.mentions}
            for mid, brand, old_label, override, voice in mentions:
                score = by_brand.get(brand, analysis.item_score)  # a brand no longer matched
                if score is None:
                    continue
                if voice:  # the brand's own account: no customer intent
                    score = brand_voice(score)
                new_label = override or score.label
                store.rescore_mention(
                    mid,
                    score,
                    label=new_label,
                    item_compound=analysis.item_score.compound if analysis.item_score else None,
                    lexicon_version=scorer.lexicon_version,
                    lang=analysis.lang,
                )
                result.rescored += 1
                result.corrected_kept += bool(override)
                if new_label != old_label:
                    result.changed += 1
                    result.transitions[(old_label, new_label)] += 1
            if analysis.item_score is not None:
                store.rescore_item(item_id, analysis.item_score, analysis.lang)
                result.items += 1
            if thread_key:
                threads.add(thread_key)
        store.refresh_threads(sorted(threads))
    log.info(
        "rescored %d mentions (%d items), %d labels changed",
        result.rescored,
        result.items,
        result.changed,
    )
    return result
