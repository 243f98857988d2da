"""Does a small model stacked on the rules beat them on posts it was not tuned on? (issue 12)

Second trial (2026-12-08): yes, on accuracy and negative recall, on both untuned sets; but it
costs ~27% of the scorer's speed and falls below 5,000 snippets/s. Not adopted.

    .venv/bin/python bench/sentiment/train.py --cv-only     # selection on the written posts, ~8 min
    .venv/bin/python bench/sentiment/train.py --write       # ... then fit on all, save model.json
    .venv/bin/python bench/sentiment/train.py --load bench/sentiment/model.json --rated
    .venv/bin/python bench/sentiment/train.py --load bench/sentiment/model.json --evaluate

`--evaluate` reads the tuned, held-out, fresh and fresh 2 sets (aggregate figures only) and
tweets/Amazon r, rules beside the model: run it once the choice is fixed, not to choose.

What is trained (`model.py`). A multinomial logistic regression for the label and one binary
logistic regression per intent (churn, complaint, request, question, praise), full-batch
Nesterov gradient descent from zero, 500 steps (deterministic, no seed; numpy here, pure Python
at inference). Features: the rule scorer's outputs (compound, pos, neg, tanh of its summed
positive and negative valences, its label and intents, which rules and which intent cues fired,
word sources) and/or words and word pairs of the text as the scorer masks it (brand and other
brands masked, numbers as '#'), a word kept when in >= 3 of that fit's training posts. Each post
is read toward its brand with its set's other brands masked, as `run.evaluate` does.

Training data. `written_posts.jsonl`: 600 posts (571 texts, 29 two-brand pairs) written for this
project by two writers on 2026-12-08, labelled when written, never scored before labelling; no
text is also in customer_voice, fresh or fresh 2. The rules were not written against them and read
them worse than any set so far: acc 0.573, F1 0.571, negative recall 0.54 (churn 0.84/0.78,
complaint 0.53/0.49, request 0.94/0.75, question 0.90/0.99, praise 0.52/0.57). Optionally the
tuned split too (W+T; always in training, never in a test fold).

Selection: 5-fold cross-validation on the written posts only (folds by a hash of the text, so both
copies of a pair stay together), over {W, W+T} x {rules, rules+words, words} x L2 {0.0003, 0.001,
0.003, 0.01}. The label regression is chosen by macro-F1, each intent's by its own F1. Out of fold:

    data feats        l2      acc    F1   negR  churn P/R  complaint  request   question  praise
    W    rules        0.0003  0.615 0.618 0.70  0.88/0.76  0.70/0.44  0.94/0.72 0.95/0.94 0.65/0.46
    W    rules        0.001   0.633 0.636 0.73  0.85/0.75  0.71/0.45  0.94/0.72 0.91/0.97 0.65/0.47
    W    rules        0.003   0.637 0.639 0.73  0.83/0.73  0.72/0.46  0.94/0.72 0.91/0.97 0.66/0.47
    W    rules        0.01    0.628 0.631 0.71  0.82/0.69  0.74/0.46  0.96/0.68 0.90/0.98 0.61/0.48
    W    rules+words  0.0003  0.777 0.779 0.77  0.91/0.68  0.74/0.70  1.00/0.70 0.91/0.97 0.78/0.73
    W    rules+words  0.001   0.782 0.784 0.78  0.93/0.64  0.75/0.70  1.00/0.68 0.91/0.97 0.78/0.73
    W    rules+words  0.003   0.777 0.779 0.78  0.95/0.66  0.76/0.69  1.00/0.62 0.91/0.97 0.79/0.70
    W    rules+words  0.01    0.780 0.782 0.80  0.95/0.59  0.75/0.68  1.00/0.55 0.90/0.97 0.81/0.68
    W    words        0.0003  0.763 0.766 0.77  0.87/0.34  0.76/0.72  0.95/0.45 0.90/0.93 0.73/0.66
    W    words        0.001   0.757 0.759 0.78  0.88/0.24  0.76/0.71  0.95/0.45 0.91/0.89 0.74/0.66
    W    words        0.003   0.747 0.749 0.79  0.88/0.24  0.77/0.70  0.94/0.40 0.90/0.86 0.77/0.65
    W    words        0.01    0.752 0.754 0.81  0.60/0.05  0.77/0.65  0.92/0.28 0.93/0.82 0.78/0.59
    W+T  rules        0.0003  0.603 0.602 0.52  0.84/0.78  0.68/0.51  0.94/0.75 0.94/0.94 0.60/0.54
    W+T  rules        0.001   0.610 0.608 0.53  0.84/0.78  0.68/0.52  0.94/0.72 0.92/0.95 0.60/0.55
    W+T  rules        0.003   0.608 0.607 0.53  0.83/0.76  0.66/0.53  0.94/0.72 0.91/0.98 0.62/0.56
    W+T  rules        0.01    0.602 0.600 0.53  0.83/0.75  0.64/0.51  0.94/0.72 0.90/0.98 0.59/0.52
    W+T  rules+words  0.0003  0.807 0.807 0.82  0.85/0.76  0.77/0.72  1.00/0.70 0.92/0.98 0.79/0.73
    W+T  rules+words  0.001   0.792 0.792 0.81  0.86/0.75  0.76/0.71  1.00/0.68 0.92/0.98 0.80/0.74
    W+T  rules+words  0.003   0.785 0.786 0.80  0.88/0.73  0.76/0.70  1.00/0.65 0.92/0.98 0.80/0.73
    W+T  rules+words  0.01    0.763 0.764 0.77  0.88/0.71  0.75/0.67  1.00/0.62 0.91/0.98 0.77/0.65
    W+T  words        0.0003  0.767 0.769 0.79  0.79/0.39  0.73/0.71  0.96/0.57 0.92/0.94 0.77/0.67
    W+T  words        0.001   0.775 0.777 0.81  0.81/0.36  0.74/0.71  0.96/0.55 0.93/0.94 0.77/0.66
    W+T  words        0.003   0.778 0.779 0.83  0.83/0.25  0.75/0.73  0.95/0.47 0.94/0.94 0.80/0.63
    W+T  words        0.01    0.770 0.770 0.85  0.91/0.17  0.74/0.70  0.93/0.33 0.96/0.91 0.84/0.57

Chosen: label W+T rules+words 0.0003 (the smallest L2 of the grid; smaller was not tried);
churn W rules 0.0003; complaint W+T rules+words 0.0003; request W+T rules 0.0003; question W+T
rules+words 0.0003; praise W+T rules+words 0.003. The chosen combination out of fold (optimistic:
chosen on these folds): acc 0.807, F1 0.807, negative recall 0.82, churn 0.88/0.76, complaint
0.77/0.72, request 0.94/0.75, question 0.92/0.98, praise 0.80/0.73. Fitted on all 600 (+ tuned
where chosen): `model.json`, digest 9334f627e77e, 2,164 features; the product-style scorer
(`ModelScorer`) reproduces the fitted model's labels on all 600 written posts.

How it is applied (`ModelScorer`, as a product integration would): after the rules, on posts
read toward a brand only, never on posts by the brand's own staff (they keep no stance and no
intent); label and intents are the model's; where the label changes, the rules' compound moves
the least it takes into the model's band (so `Scorer.label_for` agrees). Why toward a brand only:
on the VADER paper's texts (no brand) the model's labels agree less with the human ratings than
the rules' (3 classes, human mean +-0.2: tweets 0.747 against 0.892, Amazon 0.572 against 0.632),
and r falls to 0.813 / 0.613 with that compound (0.738 / 0.460 with P(positive) - P(negative) as
the compound). So tweets/Amazon r below are unchanged because the model does not read them, not
because it reads them as well as the rules.

One run of `--evaluate`, after the choice was fixed (the only time these figures were read):

    set          scorer  acc    F1    negR  churn P/R  complaint  request   question  praise
    tuned (274)  rules   0.894  0.889 0.90  1.00/0.93  0.84/0.81  0.85/0.92 0.88/0.95 0.78/0.87
                 model   1.000  1.000 1.00  1.00/0.71  1.00/1.00  0.92/0.92 1.00/1.00 1.00/1.00  (*)
    held-out     rules   0.727  0.719 0.65  0.92/0.65  0.85/0.70  1.00/0.75 0.78/0.97 0.56/0.83
     (176)       model   0.778  0.765 0.74  0.95/0.56  0.86/0.75  1.00/0.75 0.85/0.97 0.80/0.78
    fresh (151)  rules   0.921  0.910 0.89  1.00/1.00  0.89/0.84  1.00/1.00 0.97/1.00 0.76/0.85
                 model   0.927  0.922 0.92  1.00/0.93  0.89/0.84  1.00/1.00 1.00/1.00 0.94/0.91
    fresh 2      rules   0.748  0.731 0.80  0.85/0.88  0.67/0.80  0.83/0.77 0.96/1.00 0.56/0.70
     (163)       model   0.877  0.877 0.93  1.00/0.85  0.65/0.87  0.83/0.77 1.00/1.00 0.90/0.85
    tweets r     rules 0.870, model 0.870 (0 compounds changed; plain VADER 0.872)
    Amazon r     rules 0.655, model 0.655 (0 compounds changed; plain VADER 0.590)
    (*) trained on: all but the churn regression, which was chosen on the written posts alone

Speed, measured with the model integrated into `Scorer._finish` (a prototype, not committed:
same outputs as `ModelScorer` on 8,933 scorings), `run.speed` on run.py's work (all four sets, a
fresh scorer each round, one core), 3 s a round, rules and model alternating, one process:
rules 5,991 / 6,422 / 6,922 / 6,366 (median 6,394); model 4,526 / 4,974 / 4,795 / 4,421 (median
4,660): 27% fewer snippets a second, under 5,000 in every round. Per post (micro-benchmarks on
the written posts): ~11 us to take the words and word pairs, ~30-35 us for the regressions and the
features that pushed hardest (for the explanation), a few us for the rest; pruning the model to
its 30 largest features did not make it faster: the cost is per-post Python work, not model size.

Verdict. Against the adoption conditions: held-out accuracy 0.727 -> 0.778 and negative recall
0.65 -> 0.74, fresh 2 0.748 -> 0.877 and 0.80 -> 0.93 (both beat); churn precision (0.95, 1.00)
and question recall (0.97, 1.00) kept; tweets/Amazon r kept (by not reading them, above); speed
~4,660/s < 5,000: fails. Not adopted. Also worse: held-out churn recall 0.65 -> 0.56, fresh
churn recall 1.00 -> 0.93, fresh 2 churn recall 0.88 -> 0.85. Issue 12's targets (0.85) are met on
fresh 2 but not on held-out (0.778, negative recall 0.74). Held-out is the cleaner figure: fresh 2
and the written posts were both written for this project in similar voices (Reddit, HN, forum,
app-review and tweet; two-brand switches, staff replies), so part of the fresh 2 gain may be their
shared style.

What would be needed to ship it: about half the per-post cost (e.g. reuse the tokens the rules
already read instead of a second tokenisation, and name the pushing features only when an
explanation is shown), or a faster rule scorer; any change of features means a new selection on
the written posts and one more reading of held-out and fresh 2.

First trial (2026-12-07), for the record: the same regressions trained and selected (5-fold CV)
on the tuned split only, which the rules were written against and are right on 88% of, learned to
trust the rules: held-out 0.705 against the rules' 0.710, fresh 0.907 against 0.907, tweets r
0.867 against 0.871. CV inside the tuned split cannot see the rules' real error rate; hence the
written posts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# One thread: the machine is shared, and the matrices are small.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # after the thread limits: numpy reads them on import

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

import run  # noqa: E402
from model import (  # noqa: E402
    ModelScorer,
    SentimentModel,
    masked_text,
    rule_features,
    word_features,
)

from listener import sentiment as _s  # noqa: E402
from listener.intent import INTENTS  # noqa: E402
from listener.models import Score  # noqa: E402

LABELS = run.LABELS
WRITTEN = HERE / "written_posts.jsonl"
MODEL_OUT = HERE / "model.json"
MODEL_NAME = "logistic regression over rules and words (issue 12)"


# --------------------------------------------------------------------------------------------
# Features: the product's own (listener.sentiment_model), on the rules alone.


@dataclass
class Example:
    text: str
    rules: dict[str, float]
    words: set[str]
    label: str
    intents: tuple[str, ...]
    rule_label: str
    rule_intents: tuple[str, ...]


def examples(scorer: _s.Scorer, posts: list[run.Post]) -> list[Example]:
    """Each post read by the rules alone toward its brand, the set's other brands masked, as
    `run.evaluate` does; its words taken from the text as the scorer masked it."""
    brands = sorted({p.brand for p in posts})
    out = []
    for p in posts:
        mask = run.brand_terms(p.brand)
        others = tuple(t for b in brands if b != p.brand for t in run.brand_terms(b))
        sc: Score = scorer.score(p.text, neutralise=mask, others=others)
        masked = masked_text(scorer, p.text, mask, others)
        out.append(
            Example(
                p.text,
                rule_features(sc.compound, sc.pos, sc.neg, sc.label, sc.intents, sc.explanation),
                word_features(masked),
                p.label,
                p.intents,
                sc.label,
                sc.intents,
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# Logistic regression, full-batch gradient descent from zero: deterministic, no seed needed.


@dataclass(frozen=True)
class Params:
    l2: float
    rules: bool  # the rule scorer's outputs as features
    words: bool  # words and word pairs of the masked text as features
    tuned: bool  # the tuned split added to the written posts for training
    min_df: int = 3

    def describe(self) -> str:
        what = "+".join(n for n, on in (("rules", self.rules), ("words", self.words)) if on)
        return f"{'W+T' if self.tuned else 'W'} {what:<12} l2={self.l2:<6}"


def vocabulary(train: list[Example], p: Params) -> list[str]:
    """Feature names, from the training posts only (a word kept when in >= min_df of them)."""
    names = ["bias"]
    if p.rules:
        names += sorted({k for e in train for k in e.rules})
    if p.words:
        df = Counter(w for e in train for w in e.words)
        names += sorted(w for w, n in df.items() if n >= p.min_df)
    return names


def matrix(exs: list[Example], names: list[str]) -> np.ndarray:
    index = {n: i for i, n in enumerate(names)}
    x = np.zeros((len(exs), len(names)))
    for r, e in enumerate(exs):
        x[r, 0] = 1.0
        for k, v in e.rules.items():
            if k in index:
                x[r, index[k]] = v
        for w in e.words:
            if w in index:
                x[r, index[w]] = 1.0
    return x


def fit_softmax(x: np.ndarray, y: np.ndarray, k: int, l2: float, steps: int = 500) -> np.ndarray:
    """Multinomial LR; y holds class indices. L2 on all but the bias (column 0).
    Nesterov-accelerated gradient descent from zero with a fixed step: deterministic."""
    n, d = x.shape
    w = np.zeros((d, k))
    prev = w
    onehot = np.eye(k)[y]
    reg = np.full((d, 1), l2)
    reg[0] = 0.0
    # Lipschitz bound of the softmax loss: a safe fixed step.
    lr = 1.0 / (0.5 * float(np.linalg.norm(x, 2)) ** 2 / n + l2)
    for t in range(1, steps + 1):
        v = w + (t - 1) / (t + 2) * (w - prev)
        z = x @ v
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        grad = x.T @ (p - onehot) / n + reg * v
        prev, w = w, v - lr * grad
    return w


def predict_softmax(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    z = x @ w
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


@dataclass
class Part:
    """One regression: the label (3 classes) or one intent (absent, present)."""

    params: Params
    names: list[str]
    w: np.ndarray  # (features, classes)


def fit_part(train: list[Example], p: Params, intent: str | None) -> Part:
    names = vocabulary(train, p)
    x = matrix(train, names)
    if intent is None:
        y = np.array([LABELS.index(e.label) for e in train])
        return Part(p, names, fit_softmax(x, y, 3, p.l2))
    y = np.array([int(intent in e.intents) for e in train])
    return Part(p, names, fit_softmax(x, y, 2, p.l2))


@dataclass
class Fitted:
    label: Part
    intents: dict[str, Part]


def fit(train: list[Example], p: Params) -> Fitted:
    names = vocabulary(train, p)
    x = matrix(train, names)
    y = np.array([LABELS.index(e.label) for e in train])
    label = Part(p, names, fit_softmax(x, y, 3, p.l2))
    intents = {}
    for intent in INTENTS:
        yi = np.array([int(intent in e.intents) for e in train])
        intents[intent] = Part(p, names, fit_softmax(x, yi, 2, p.l2))
    return Fitted(label, intents)


def predict(m: Fitted, exs: list[Example]) -> tuple[list[str], list[tuple[str, ...]]]:
    lp = predict_softmax(matrix(exs, m.label.names), m.label.w)
    labels = [LABELS[i] for i in lp.argmax(axis=1)]
    probs = {
        i: predict_softmax(matrix(exs, part.names), part.w)[:, 1] for i, part in m.intents.items()
    }
    intents = [tuple(i for i in INTENTS if probs[i][r] >= 0.5) for r in range(len(exs))]
    return labels, intents


def export(m: Fitted, digits: int = 4) -> dict:
    """The fitted weights as the package ships them: by feature name, rounded, zeros dropped;
    each intent's two-class softmax as one logistic weight (present minus absent)."""
    label_weights = {}
    for j, name in enumerate(m.label.names[1:], start=1):
        w = [round(float(v), digits) for v in m.label.w[j]]
        if any(w):
            label_weights[name] = w
    intent_weights: dict[str, dict[str, float]] = {}
    intent_bias = {}
    for intent, part in m.intents.items():
        diff = part.w[:, 1] - part.w[:, 0]
        intent_bias[intent] = round(float(diff[0]), digits)
        intent_weights[intent] = {
            name: round(float(diff[j]), digits)
            for j, name in enumerate(part.names[1:], start=1)
            if round(float(diff[j]), digits)
        }
    parts = {"label": m.label.params, **{i: part.params for i, part in m.intents.items()}}
    return {
        "name": MODEL_NAME,
        "trained": {
            k: {
                "on": "written_posts" + (" + tuned split" if p.tuned else ""),
                "features": "+".join(n for n, on in (("rules", p.rules), ("words", p.words)) if on),
                "l2": p.l2,
            }
            for k, p in parts.items()
        },
        "words": any(p.words for p in parts.values()),
        "labels": list(LABELS),
        "label_bias": [round(float(v), digits) for v in m.label.w[0]],
        "label_weights": label_weights,
        "intent_bias": intent_bias,
        "intent_weights": intent_weights,
    }


# --------------------------------------------------------------------------------------------
# Evaluation


def metrics(exs: list[Example], labels: list[str], intents: list[tuple[str, ...]]) -> dict:
    c = run.classification([e.label for e in exs], labels)
    c["intents"] = run.intent_scores([e.intents for e in exs], intents)
    return c


def summary(m: dict) -> str:
    neg = m["per_class"]["negative"]["recall"]
    parts = [f"acc {m['accuracy']:.3f}", f"F1 {m['macro_f1']:.3f}", f"negR {neg:.2f}"]
    for i in INTENTS:
        s = m["intents"][i]
        parts.append(f"{i} {s['precision']:.2f}/{s['recall']:.2f}")
    return "  ".join(parts)


def folds(exs: list[Example], k: int = 5) -> list[int]:
    """Fold of each example by a hash of its text (both copies of a pair in the same fold)."""
    return [int(hashlib.sha256(e.text.encode()).hexdigest()[-6:], 16) % k for e in exs]


Predictions = tuple[list[str], list[tuple[str, ...]]]


def cross_validate(
    written: list[Example], tuned: list[Example], p: Params, k: int = 5
) -> Predictions:
    """k-fold CV on the written posts (the tuned split, when used, always in training): each
    written post's label and intents from the regressions fitted without its fold."""
    fold = folds(written, k)
    labels: list[str] = [""] * len(written)
    intents: list[tuple[str, ...]] = [()] * len(written)
    for f in range(k):
        train = [e for e, g in zip(written, fold, strict=True) if g != f]
        if p.tuned:
            train += tuned
        test_idx = [i for i, g in enumerate(fold) if g == f]
        m = fit(train, p)
        lab, ints = predict(m, [written[i] for i in test_idx])
        for j, i in enumerate(test_idx):
            labels[i], intents[i] = lab[j], ints[j]
    return labels, intents


def intent_f1(gold: list[tuple[str, ...]], got: list[tuple[str, ...]], intent: str) -> float:
    tp = sum(intent in g and intent in p for g, p in zip(gold, got, strict=True))
    n_pred = sum(intent in p for p in got)
    n_gold = sum(intent in g for g in gold)
    return 2 * tp / (n_pred + n_gold) if n_pred + n_gold else 0.0


def rules_metrics(exs: list[Example]) -> dict:
    return metrics(exs, [e.rule_label for e in exs], [e.rule_intents for e in exs])


GRID = [
    Params(l2, rules, words, tuned)
    for tuned in (False, True)
    for rules, words in ((True, False), (True, True), (False, True))
    for l2 in (0.0003, 0.001, 0.003, 0.01)
]


def load_written(paths: Sequence[Path]) -> list[run.Post]:
    posts: list[run.Post] = []
    for path in paths:
        posts += run.load_posts(path)
    return posts


def engine(name: str, scorer: _s.Scorer | ModelScorer) -> run.Engine:
    def score(text: str, mask: Sequence[str], others: Sequence[str]) -> tuple[float, str, tuple]:
        s = scorer.score(text, neutralise=mask, others=others)
        return s.compound, s.label, s.intents

    return run.Engine(name, score)


def select_and_fit(args: argparse.Namespace, rules_only: _s.Scorer) -> SentimentModel | None:
    """Cross-validate the grid on the written posts, choose, fit on all of them, export."""
    everything = run.load_posts(args.data / run.CUSTOMER_VOICE)
    tuned = [p for p in everything if run.tuned_part(p.text)]
    written = load_written(args.written)
    # Aggregate check only: no written text is one of the posts we evaluate on.
    written_texts = {p.text for p in written}
    for name, posts in (
        ("customer_voice", everything),
        ("fresh", run.load_posts(run.FRESH)),
        ("fresh 2", run.load_posts(run.FRESH_2)),
    ):
        shared = sum(p.text in written_texts for p in posts)
        print(f"written texts also in {name}: {shared}")
    ex_written = examples(rules_only, written)
    ex_tuned = examples(rules_only, tuned)
    n_texts = len({e.text for e in ex_written})
    print(
        f"written: {len(ex_written)} posts ({n_texts} texts); tuned: {len(ex_tuned)};"
        " 5-fold cross-validation on the written posts, grouped by text"
    )
    print(f"{'rules (fixed, no CV needed)':<34}{summary(rules_metrics(ex_written))}")
    # Each regression chooses its own features, data and L2: the label by macro-F1, each
    # intent by its F1, all out of fold on the written posts.
    gold = [e.intents for e in ex_written]
    cv: dict[Params, Predictions] = {}
    for p in GRID:
        cv[p] = labels, intents = cross_validate(ex_written, ex_tuned, p)
        m = metrics(ex_written, labels, intents)
        print(f"{p.describe():<34}{summary(m)}", flush=True)
    label_p = max(GRID, key=lambda p: (metrics(ex_written, *cv[p])["macro_f1"], -GRID.index(p)))
    intent_p = {
        i: max(GRID, key=lambda p, i=i: (intent_f1(gold, cv[p][1], i), -GRID.index(p)))
        for i in INTENTS
    }
    print(f"chosen: label {label_p.describe()}")
    for i, p in intent_p.items():
        print(f"        {i:<9} {p.describe()}")
    combined = (
        cv[label_p][0],
        [tuple(i for i in INTENTS if i in cv[intent_p[i]][1][r]) for r in range(len(ex_written))],
    )
    print(f"{'chosen, out of fold (optimistic)':<34}{summary(metrics(ex_written, *combined))}")
    if args.cv_only:
        return None

    def training(p: Params) -> list[Example]:
        return ex_written + (ex_tuned if p.tuned else [])

    fitted = Fitted(
        fit_part(training(label_p), label_p, None),
        {i: fit_part(training(p), p, i) for i, p in intent_p.items()},
    )
    raw = (json.dumps(export(fitted), indent=0, sort_keys=True) + "\n").encode()
    model = SentimentModel.from_json(raw)
    if args.write:
        args.write.write_bytes(raw)
        print(f"wrote {args.write} ({len(raw):,} bytes, digest {model.digest})")
    # ModelScorer with these (rounded) weights reads the training posts as the fitted model did.
    with_model = engine("model", ModelScorer(rules_only, model))
    lab, _ = predict(fitted, ex_written)
    brands = sorted({p.brand for p in written})
    agree = sum(
        with_model.score(
            p.text,
            run.brand_terms(p.brand),
            tuple(t for b in brands if b != p.brand for t in run.brand_terms(b)),
        )[1]
        == a
        for p, a in zip(written, lab, strict=True)
    )
    print(
        f"ModelScorer labels equal to the fitted model's on the written posts: {agree}/{len(lab)}"
    )
    return model


def report_rated(data: Path, engines: Sequence[run.Engine]) -> None:
    """Pearson r on the VADER paper's tweets and Amazon snippets, rules beside the model."""
    for name, file in run.RATED.items():
        rows = run.load_rated(data / file)
        gold = [m for m, _ in rows]
        got = {e.name: [e.score(text, (), ())[0] for _, text in rows] for e in engines}
        changed = sum(a != b for a, b in zip(got["rules"], got["model"], strict=True))
        print(
            f"{name} r: rules {run.pearson(gold, got['rules']):.3f}"
            f"  model {run.pearson(gold, got['model']):.3f}  ({changed} compounds changed)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=run.DEFAULT_DATA)
    parser.add_argument(
        "--written", type=Path, nargs="+", default=[WRITTEN], help="labelled posts to train on"
    )
    parser.add_argument("--cv-only", action="store_true", help="the model selection alone")
    parser.add_argument("--write", type=Path, nargs="?", const=MODEL_OUT, help="save the model")
    parser.add_argument("--load", type=Path, help="a saved model instead (no selection, no fit)")
    parser.add_argument("--rated", action="store_true", help="then tweets and Amazon r")
    parser.add_argument(
        "--evaluate",
        action="store_true",
        help="then tuned, held-out, fresh, fresh 2 (aggregates only), tweets and Amazon r: run"
        " it once the choice is fixed",
    )
    args = parser.parse_args(argv)
    rules_only = _s.Scorer()
    if args.load:
        model: SentimentModel | None = SentimentModel.from_json(args.load.read_bytes())
    else:
        model = select_and_fit(args, rules_only)
    if model is None:
        return 0
    engines = (engine("rules", rules_only), engine("model", ModelScorer(rules_only, model)))
    if args.evaluate:
        # Only now, with the choice fixed, are the posts nobody trained or selected on read.
        everything = run.load_posts(args.data / run.CUSTOMER_VOICE)
        sets = {
            "tuned": [p for p in everything if run.tuned_part(p.text)],
            "held-out": [p for p in everything if not run.tuned_part(p.text)],
            "fresh": run.load_posts(run.FRESH),
            "fresh 2": run.load_posts(run.FRESH_2),
        }
        print()
        for name, posts in sets.items():
            print(f"{name} ({len(posts)})")
            for e in engines:
                print(f"  {e.name:<8}{summary(run.evaluate(e, posts))}")
    if args.evaluate or args.rated:
        report_rated(args.data, engines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
