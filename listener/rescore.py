"""Re-score stored mentions with the current scorer (after a lexicon or threshold change).

The item text kept in the database is matched again to find the sentences around each brand,
then scored; a user's correction (`label_override`) is kept as set, so only the scorer's own
label (`auto_label`) moves under it.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field

from .analyse import ITEM_SCORE_CHARS
from .match import Matcher, scoring_text
from .sentiment import Scorer
from .store import Store

log = logging.getLogger(__name__)


@dataclass
class RescoreResult:
    rescored: int = 0
    changed: int = 0  # effective labels that changed
    corrected_kept: int = 0
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)


def rescore_mentions(
    store: Store, scorer: Scorer, matcher: Matcher, *, everything: bool = False
) -> RescoreResult:
    result = RescoreResult()
    sql = (
        "SELECT m.id, m.brand, m.label, m.label_override, m.thread_key, i.title, i.text, i.id "
        "FROM mentions m JOIN items i ON i.id = m.item_id"
    )
    args: list[str] = []
    if not everything:
        sql += " WHERE m.lexicon_version IS NOT ? "
        args.append(scorer.lexicon_version)
    rows = store.conn.execute(sql, args).fetchall()
    threads: set[str] = set()
    with store.transaction():
        for mid, brand, old_label, override, thread_key, title, text, item_id in rows:
            full = f"{title}\n{text or ''}" if title else (text or "")
            try:
                neutral = matcher.neutral_terms(brand)
            except KeyError:  # a brand no longer in the config keeps its name neutral
                neutral = (brand,)
            match = next((m for m in matcher.match(full) if m.brand == brand), None)
            basis = scoring_text(full, match.spans) if match and match.spans else full
            s = scorer.score(basis, neutralise=neutral)
            new_label = override or s.label
            store.conn.execute(
                "UPDATE mentions SET compound = ?, pos = ?, neu = ?, neg = ?, auto_label = ?, label = ?, "
                "explanation = ?, lexicon_version = ? WHERE id = ?",
                (
                    s.compound,
                    s.pos,
                    s.neu,
                    s.neg,
                    s.label,
                    new_label,
                    json.dumps(list(s.explanation), ensure_ascii=False),
                    scorer.lexicon_version,
                    mid,
                ),
            )
            item_score = scorer.score(full[:ITEM_SCORE_CHARS], neutralise=neutral)
            store.conn.execute(
                "UPDATE items SET compound = ?, explanation = ?, label = (SELECT label FROM mentions "
                "WHERE item_id = ? AND not_relevant = 0 ORDER BY compound LIMIT 1) WHERE id = ?",
                (
                    item_score.compound,
                    json.dumps(list(item_score.explanation), ensure_ascii=False),
                    item_id,
                    item_id,
                ),
            )
            result.rescored += 1
            if override:
                result.corrected_kept += 1
            if new_label != old_label:
                result.changed += 1
                result.transitions[(old_label, new_label)] += 1
            if thread_key:
                threads.add(thread_key)
        for key in threads:
            store.refresh_thread(key)
    log.info("rescored %d mentions, %d labels changed", result.rescored, result.changed)
    return result
