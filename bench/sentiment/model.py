"""A small model read after the rules (issue 12), as `train.py` trains and evaluates it: not in
the product (see train.py's docstring for why).

One multinomial logistic regression gives the label (negative, neutral, positive), one binary
regression per intent says whether the author means it, over what the rule scorer said and the
words of the post. Each weight belongs to a named feature ("words: 'last month'", "rules: fact"),
so an explanation can say which features pushed hardest toward the label. Inference is pure
Python, a few dictionary look-ups per post.

`ModelScorer` applies it after the rules as the product would: only to posts read toward a brand,
never to posts by the brand's own staff; its label and intents are kept, and the rules' compound
is moved the least it takes into the band of the model's label.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Container, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from listener import sentiment as _s
from listener.intent import INTENTS
from listener.models import Label, Score

LABELS: tuple[Label, ...] = ("negative", "neutral", "positive")
REASONS = 3  # features named in an explanation
_TOKEN = re.compile(r"[a-z][a-z'-]*|\d+(?:[.,:]\d+)*|[?!\U0001f643]")


# --------------------------------------------------------------------------------------------
# Features


def rule_features(
    compound: float,
    pos: float,
    neg: float,
    label: str,
    intents: Iterable[str],
    explanation: Iterable[Mapping[str, Any]],
) -> dict[str, float]:
    """What the rules said: their scores, label and intents, and which rules fired."""
    f: dict[str, float] = {
        "compound": compound,
        "pos": pos,
        "neg": neg,
        "label=" + label: 1.0,
    }
    for i in intents:
        f["intent=" + i] = 1.0
    pos_sum = neg_sum = 0.0
    for e in explanation:
        rule = e.get("rule")
        if rule == "intent":
            f[f"cue={e['intent']}:{e.get('cue', '')}"] = 1.0
        elif rule == "fact":
            f["rule=fact"] = 1.0
            v = float(e.get("valence", 0.0))
            neg_sum += min(0.0, v)
            pos_sum += max(0.0, v)
        elif rule is not None:
            f["rule=" + str(rule)] = 1.0
        else:
            v = float(e.get("valence", 0.0))
            pos_sum += max(0.0, v)
            neg_sum += min(0.0, v)
            f["src=" + str(e.get("source"))] = 1.0
    f["pos_sum"] = math.tanh(pos_sum / 4)
    f["neg_sum"] = math.tanh(neg_sum / 4)
    return f


def words_of(masked: str) -> set[str]:
    """Words and word pairs ("last month") of the text as the scorer sees it (brands masked),
    numbers as '#'. A word never holds a space or '=', so neither looks like another feature."""
    toks = [
        "#" if t[0].isdigit() else t for t in _TOKEN.findall(masked.lower().replace("\u2019", "'"))
    ]
    out = set(toks)
    out.update(map(" ".join, itertools.pairwise(toks)))
    return out


def word_features(masked: str) -> set[str]:
    """`words_of` as features named for training: "w=month", "b=last month"."""
    return {("b=" if " " in w else "w=") + w for w in words_of(masked)}


def describe_feature(name: str) -> str:
    """A feature as an explanation shows it: "words: 'last month'", "rules: fact"."""
    kind, _, value = name.partition("=")
    if kind in ("w", "b"):
        return f"words: '{value}'"
    if kind == "cue":
        intent, _, cue = value.partition(":")
        return f"rules: {intent} ({cue})" if cue else f"rules: {intent}"
    if kind == "src":
        return f"rules: {value} words"
    if kind in ("label", "intent", "rule"):
        return f"rules: {value}"
    return {
        "compound": "rules: compound",
        "pos": "rules: positive share",
        "neg": "rules: negative share",
        "pos_sum": "rules: positive words",
        "neg_sum": "rules: negative words",
    }.get(name, f"rules: {name}")


# --------------------------------------------------------------------------------------------
# The model


class Verdict(NamedTuple):
    label: Label
    lean: float  # P(positive) - P(negative)
    intents: tuple[str, ...]
    because: tuple[str, ...]  # the features that pushed hardest toward the label, most first
    intent_because: Mapping[str, tuple[str, ...]]  # likewise for each intent found


class SentimentModel:
    """The label regression and one regression per intent, as trained (weights by feature)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.name = str(data.get("name", "model"))
        self.digest = str(data.get("digest", ""))
        self.words = bool(data.get("words", True))
        self.intents = tuple(i for i in INTENTS if i in data["intent_weights"])
        self._n = 3 + len(self.intents)
        # One row per feature: its three label weights, one weight per intent, then how hard
        # it pushes toward each label (its weight there less the mean of the other two).
        self._bias = (
            *(float(b) for b in data["label_bias"]),
            *(float(data["intent_bias"][i]) for i in self.intents),
        )
        names = set(data["label_weights"])
        for i in self.intents:
            names.update(data["intent_weights"][i])
        zero = (0.0, 0.0, 0.0)
        self._rules: dict[str, tuple[str, Sequence[float]]] = {}
        self._words: dict[str, tuple[str, Sequence[float]]] = {}
        for name in names:
            lw = tuple(float(x) for x in data["label_weights"].get(name, zero))
            row = (
                *lw,
                *(float(data["intent_weights"][i].get(name, 0.0)) for i in self.intents),
                *(1.5 * w - sum(lw) / 2 for w in lw),
            )
            kind, _, word = name.partition("=")
            table = self._words if kind in ("w", "b") else self._rules
            table[word if kind in ("w", "b") else name] = (describe_feature(name), row)

    @classmethod
    def from_json(cls, raw: bytes) -> SentimentModel:
        data = json.loads(raw)
        data["digest"] = hashlib.sha256(raw).hexdigest()[:12]
        return cls(data)

    def read(
        self,
        rules: Mapping[str, float],
        words: Iterable[str],
        explain: Container[str] = INTENTS,
    ) -> Verdict:
        """`rules`: `rule_features`; `words`: `words_of` the masked text; `explain`: the intents
        whose features to name, if found (the others go without)."""
        # The features the model knows, each as (how it is shown, its row of weights times its
        # value): three label weights, one per intent, then its push toward each label.
        known = list(filter(None, map(self._words.get, words))) if self.words else []
        get = self._rules.get
        for name, x in rules.items():
            hit = get(name)
            if hit is not None:
                known.append(hit if x == 1.0 else (hit[0], [w * x for w in hit[1]]))
        # Each output's score: its bias plus its column of the rows.
        z = [sum(column) for column in zip(self._bias, *[row for _, row in known], strict=False)]
        k = 0 if z[0] >= z[1] and z[0] >= z[2] else 1 if z[1] >= z[2] else 2
        top = z[k]
        e = [math.exp(v - top) for v in z[:3]]
        at = self._n + k
        because = _top([(row[at], shown) for shown, row in known if row[at] > 0])
        intents = []
        intent_because: dict[str, tuple[str, ...]] = {}
        for n, intent in enumerate(self.intents, start=3):
            if z[n] >= 0.0:  # P >= 0.5
                intents.append(intent)
                if intent in explain:
                    intent_because[intent] = _top([(row[n], s) for s, row in known if row[n] > 0])
        lean = (e[2] - e[0]) / sum(e)
        return Verdict(LABELS[k], lean, tuple(intents), because, intent_because)


def _top(pushes: list[tuple[float, str]]) -> tuple[str, ...]:
    """The REASONS features that pushed hardest; ties go by name, whatever the order met."""
    pushes.sort(reverse=True)
    return tuple(shown for _, shown in pushes[:REASONS])


def masked_text(scorer: _s.Scorer, text: str, mask: Sequence[str], others: Sequence[str]) -> str:
    """The text as the scorer reads it: quotes normalised, the brand and the other brands masked."""
    text = text.translate(_s._QUOTES)
    if mask:
        text = scorer._neutralise(text, tuple(mask), [])
    if others:
        text = _s._mask_others(text, tuple(others))
    return text


class ModelScorer:
    """The rule scorer, then the model: `score` as `Scorer.score`, label and intents the model's."""

    def __init__(self, scorer: _s.Scorer, model: SentimentModel) -> None:
        self.scorer = scorer
        self.model = model

    def score(
        self, text: str, *, neutralise: Sequence[str] = (), others: Sequence[str] = ()
    ) -> Score:
        s = self.scorer.score(text, neutralise=neutralise, others=others)
        staff = any(e.get("rule") == "brand's own voice" for e in s.explanation)
        if not neutralise or staff:
            return s
        verdict = self.model.read(
            rule_features(s.compound, s.pos, s.neg, s.label, s.intents, s.explanation),
            words_of(masked_text(self.scorer, text, neutralise, others)),
        )
        compound = s.compound
        if verdict.label != s.label:
            compound = self._within(verdict.label, compound)
        return Score(compound, s.pos, s.neu, s.neg, verdict.label, s.explanation, verdict.intents)

    def _within(self, label: Label, compound: float) -> float:
        """The rules' compound moved the least it takes into the band of the model's label."""
        hi = self.scorer.config.positive_threshold
        lo = self.scorer.config.negative_threshold
        if label == "positive":
            return max(compound, hi)
        if label == "negative":
            return min(compound, lo)
        margin = min(0.01, (hi - lo) / 4)
        return max(lo + margin, min(hi - margin, compound))
