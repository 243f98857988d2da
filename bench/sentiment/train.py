"""Does a small model stacked on the rules beat them on posts it was not tuned on? (issue 12) No.

    .venv/bin/python bench/sentiment/train.py             # CV on tuned, then held-out, fresh, r
    .venv/bin/python bench/sentiment/train.py --cv-only   # the model selection alone
    .venv/bin/python bench/sentiment/train.py --post-hoc  # also every grid point on held-out/fresh

What was tried. A multinomial logistic regression for the label (negative/neutral/positive) and
one binary logistic regression per intent (churn, complaint, request, question, praise), trained
ONLY on the bench's "tuned" split (`run.tuned_part`, 274 posts), each post scored toward its
brand with the other brands masked exactly as `run.evaluate` does. Chosen for being explainable
(one weight per named feature, so an explanation could list the features that pushed hardest),
tiny (a few hundred weights as JSON), pure-Python at inference (dict look-ups, no new runtime
dependency) and deterministic to train (full-batch Nesterov gradient descent from zero, no seed).
Features: the rule scorer's own outputs (compound, pos, neg, tanh of the summed positive and
negative valences in the explanation, its label and intents one-hot, which rules fired: irony,
fact, negation, booster, but, punctuation, question, each intent cue by name, word sources)
and/or binary unigrams and bigrams of the masked text kept when in >= 3 training posts.
Selection by 5-fold cross-validation inside the tuned split (folds by a hash of the text, so both
copies of a two-brand post stay together), on label macro-F1 + mean intent F1, over
{rules, rules+words, words} x L2 {0.003, 0.01, 0.03}. The held-out and fresh posts were read
only after the choice was fixed.

Figures (this machine, 2026-12-07; acc, macro-F1, negative recall, intent precision/recall):

    5-fold CV on tuned   rules alone (in-sample) acc 0.880 F1 0.876 negR 0.87
                         rules       l2=0.003    acc 0.883 F1 0.881 negR 0.87   <- chosen
                         rules+words l2=0.003    acc 0.876 F1 0.873 negR 0.87
                         words       l2=0.003    acc 0.624 F1 0.580 negR 0.78
    held-out (176)       rules  acc 0.710 F1 0.705 negR 0.62 churn 0.91/0.62 complaint 0.84/0.68
                                request 1.00/0.75 question 0.78/0.97 praise 0.55/0.83
                         model  acc 0.705 F1 0.695 negR 0.63 churn 0.91/0.62 complaint 0.85/0.65
                                request 1.00/0.75 question 0.80/0.93 praise 0.61/0.78
    fresh (151)          rules  acc 0.907 F1 0.899 negR 0.85 churn 1.00/1.00 complaint 0.89/0.77
                         model  acc 0.907 F1 0.899 negR 0.85 churn 1.00/1.00 complaint 0.91/0.84
    tweets r             rules 0.871, model 0.867 (plain VADER 0.872); Amazon r 0.653 both

The chosen model changes 4 of 176 held-out labels (2 right, 2 wrong) and none of the fresh ones:
it learned to trust the rules, because on the tuned split the rules ARE right 88% of the time:
they were written reading those posts. Cross-validation inside the tuned split cannot see the
rules' real (held-out) error rate, so no honest selection on it will make the stacker distrust
them. Post hoc (printed with --post-hoc, NOT used to choose): the best grid point on held-out,
rules+words l2=0.003, reaches only acc 0.727 / negR 0.66 and loses on fresh (0.901, request
recall 1.00 -> 0.58); a words-only model has held-out negative recall 0.84-0.91 but accuracy
0.693 and almost no churn or request recall. Nothing reaches issue 12's targets (0.85).

Not adopted: it does not beat the rules on held-out and lowers tweets r. What would be needed: more
labelled posts the rules were not written against (so a stacker could learn when they fail), or
rules' features computed out-of-sample; the words-only model's negative recall hints at signal
(bad facts without a negative word) that the rules miss.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import os
import re
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

from listener import sentiment as _s  # noqa: E402
from listener.intent import INTENTS  # noqa: E402
from listener.models import Score  # noqa: E402

LABELS = run.LABELS
_TOKEN = re.compile(r"[a-z][a-z'’-]*|\d+(?:[.,:]\d+)*|[?!🙃]")


# --------------------------------------------------------------------------------------------
# Features: what the rules said (their outputs and which rules fired) + a few words.


def rule_features(score: Score) -> dict[str, float]:
    f: dict[str, float] = {
        "bias": 1.0,
        "compound": score.compound,
        "pos": score.pos,
        "neg": score.neg,
        "label=" + score.label: 1.0,
    }
    for i in score.intents:
        f["intent=" + i] = 1.0
    pos_sum = neg_sum = 0.0
    for e in score.explanation:
        rule = e.get("rule")
        if rule == "intent":
            f[f"cue={e['intent']}:{e.get('cue', '')}"] = 1.0
        elif rule == "fact":
            f["rule=fact"] = 1.0
            neg_sum += min(0.0, float(e.get("valence", 0.0)))
            pos_sum += max(0.0, float(e.get("valence", 0.0)))
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


def word_features(masked: str) -> set[str]:
    toks = ["#" if t[0].isdigit() else t for t in _TOKEN.findall(masked.lower())]
    out = {"w=" + t for t in toks}
    out |= {"b=" + a + " " + b for a, b in itertools.pairwise(toks)}
    return out


def masked_text(scorer: _s.Scorer, text: str, mask: Sequence[str], others: Sequence[str]) -> str:
    """The text as the scorer sees it: the brand and the other brands masked."""
    text = text.translate(_s._QUOTES)
    if mask:
        text = scorer._neutralise(text, tuple(mask), [])
    if others:
        text = _s._mask_others(text, tuple(others))
    return text


@dataclass
class Example:
    text: str
    rules: dict[str, float]
    words: set[str]
    label: str
    intents: tuple[str, ...]
    rule_label: str
    rule_intents: tuple[str, ...]
    score: Score


def examples(scorer: _s.Scorer, posts: list[run.Post]) -> list[Example]:
    brands = sorted({p.brand for p in posts})
    out = []
    for p in posts:
        mask = run.brand_terms(p.brand)
        others = tuple(t for b in brands if b != p.brand for t in run.brand_terms(b))
        sc = scorer.score(p.text, neutralise=mask, others=others)
        out.append(
            Example(
                p.text,
                rule_features(sc),
                word_features(masked_text(scorer, p.text, mask, others)),
                p.label,
                p.intents,
                sc.label,
                sc.intents,
                sc,
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# Logistic regression, full-batch gradient descent from zero: deterministic, no seed needed.


@dataclass(frozen=True)
class Params:
    l2: float
    rules: bool  # the rule scorer's outputs as features
    words: bool  # words and bigrams of the masked text as features
    min_df: int = 3


def vocabulary(train: list[Example], p: Params) -> list[str]:
    names = ["bias"]
    if p.rules:
        names += sorted({k for e in train for k in e.rules} - {"bias"})
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
class Fitted:
    names: list[str]
    label_w: np.ndarray
    intent_w: dict[str, np.ndarray]  # each (d, 2): softmax over (absent, present)


def fit(train: list[Example], p: Params) -> Fitted:
    names = vocabulary(train, p)
    x = matrix(train, names)
    y = np.array([LABELS.index(e.label) for e in train])
    label_w = fit_softmax(x, y, 3, p.l2)
    intent_w = {}
    for intent in INTENTS:
        yi = np.array([int(intent in e.intents) for e in train])
        intent_w[intent] = fit_softmax(x, yi, 2, p.l2)
    return Fitted(names, label_w, intent_w)


def predict(m: Fitted, exs: list[Example]) -> tuple[list[str], list[tuple[str, ...]]]:
    x = matrix(exs, m.names)
    labels = [LABELS[i] for i in predict_softmax(x, m.label_w).argmax(axis=1)]
    probs = {i: predict_softmax(x, w)[:, 1] for i, w in m.intent_w.items()}
    intents = [tuple(i for i in INTENTS if probs[i][r] >= 0.5) for r in range(len(exs))]
    return labels, intents


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


def cross_validate(exs: list[Example], p: Params, k: int = 5) -> dict:
    fold = folds(exs, k)
    labels: list[str] = [""] * len(exs)
    intents: list[tuple[str, ...]] = [()] * len(exs)
    for f in range(k):
        train = [e for e, g in zip(exs, fold, strict=True) if g != f]
        test_idx = [i for i, g in enumerate(fold) if g == f]
        m = fit(train, p)
        lab, ints = predict(m, [exs[i] for i in test_idx])
        for j, i in enumerate(test_idx):
            labels[i], intents[i] = lab[j], ints[j]
    return metrics(exs, labels, intents)


def rules_metrics(exs: list[Example]) -> dict:
    return metrics(exs, [e.rule_label for e in exs], [e.rule_intents for e in exs])


GRID = [
    Params(l2, rules, words)
    for rules, words in ((True, False), (True, True), (False, True))
    for l2 in (0.003, 0.01, 0.03)
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=run.DEFAULT_DATA)
    parser.add_argument("--cv-only", action="store_true")
    parser.add_argument(
        "--post-hoc",
        action="store_true",
        help="also print every grid point on held-out/fresh (after selection; not used for it)",
    )
    args = parser.parse_args(argv)
    everything = run.load_posts(args.data / run.CUSTOMER_VOICE)
    tuned = [p for p in everything if run.tuned_part(p.text)]
    scorer = _s.Scorer()
    ex_tuned = examples(scorer, tuned)
    print(f"tuned: {len(ex_tuned)} posts; 5-fold cross-validation, grouped by text")
    print(f"{'rules (no CV needed)':<32}{summary(rules_metrics(ex_tuned))}")
    best: tuple[float, Params] | None = None
    for p in GRID:
        m = cross_validate(ex_tuned, p)
        # Model selection on the tuned split only: macro-F1 of the label plus mean intent F1.
        f1s = []
        for i in INTENTS:
            s = m["intents"][i]
            pr, rc = s["precision"], s["recall"]
            f1s.append(0.0 if not pr or not rc or math.isnan(pr) else 2 * pr * rc / (pr + rc))
        key = m["macro_f1"] + sum(f1s) / len(f1s)
        what = "+".join(n for n, on in (("rules", p.rules), ("words", p.words)) if on)
        print(f"{what:<12} l2={p.l2:<6}  {summary(m)}  sel {key:.3f}")
        if best is None or key > best[0]:
            best = (key, p)
    assert best is not None
    chosen = best[1]
    print(f"chosen: {chosen}")
    if args.cv_only:
        return 0
    model = fit(ex_tuned, chosen)
    # Only now, with the parameters fixed, are the posts the rules were not tuned on read.
    untuned = {
        "held-out": [p for p in everything if not run.tuned_part(p.text)],
        "fresh": run.load_posts(run.FRESH),
    }
    print()
    for name, posts in untuned.items():
        exs = examples(scorer, posts)
        labels, intents = predict(model, exs)
        print(f"{name} ({len(exs)})")
        print(f"  {'rules':<28}{summary(rules_metrics(exs))}")
        print(f"  {'model':<28}{summary(metrics(exs, labels, intents))}")
        print(
            f"  {'model label, rules intents':<28}{summary(metrics(exs, labels, [e.rule_intents for e in exs]))}"
        )
        flips = Counter(
            (e.label, e.rule_label, lab)
            for e, lab in zip(exs, labels, strict=True)
            if lab != e.rule_label
        )
        print("  label changed (gold, rules, model):", dict(sorted(flips.items())))
        if args.post_hoc:
            for p in GRID:
                m = fit(ex_tuned, p)
                lab, ints = predict(m, exs)
                what = "+".join(n for n, on in (("rules", p.rules), ("words", p.words)) if on)
                print(f"    post hoc {what:<12} l2={p.l2:<6}{summary(metrics(exs, lab, ints))}")
    for name, file in run.RATED.items():
        rows = run.load_rated(args.data / file)
        rule_c, model_c = [], []
        exs = []
        for _, text in rows:
            sc = scorer.score(text)
            exs.append(
                Example(
                    text,
                    rule_features(sc),
                    word_features(masked_text(scorer, text, (), ())),
                    "neutral",
                    (),
                    sc.label,
                    sc.intents,
                    sc,
                )
            )
        x = matrix(exs, model.names)
        probs = predict_softmax(x, model.label_w)
        for e, pr in zip(exs, probs, strict=True):
            rule_c.append(e.score.compound)
            lab = LABELS[int(pr.argmax())]
            model_c.append(
                adjusted_compound(e.score.compound, e.rule_label, lab, float(pr[2] - pr[0]))
            )
        gold = [m for m, _ in rows]
        changed = sum(a != b for a, b in zip(rule_c, model_c, strict=True))
        print(
            f"{name} r: rules {run.pearson(gold, rule_c):.3f}  model {run.pearson(gold, model_c):.3f}  ({changed} changed)"
        )
    return 0


def adjusted_compound(compound: float, rule_label: str, label: str, lean: float) -> float:
    """The rules' compound where the model agrees with their label; otherwise the model's lean
    (P(positive) - P(negative)) moved just inside the band of its label."""
    if label == rule_label:
        return compound
    if label == "positive":
        return max(lean, 0.05)
    if label == "negative":
        return min(lean, -0.05)
    return max(-0.04, min(0.04, lean))


if __name__ == "__main__":
    sys.exit(main())
