"""Benchmark listener's sentiment and intents against plain VADER, in one run.

    .venv/bin/python bench/sentiment/run.py [--data ../shared/data/sentiment] [--json]

Reports, for plain VADER 3.3.2 and for listener's Scorer side by side, on four sets of posts:

- "tuned": the part of customer_voice_intents.jsonl the rules were developed against (a post is
  there when the first hex digit of sha256(text) modulo 10 is below 6, ~60%; both copies of a
  two-brand post share a text, so they fall in the same part);
- "held-out": the rest of that file (~40%), whose texts were never read while tuning;
- "fresh": tests/fixtures/sentiment/fresh_posts.jsonl, posts written for this project with new
  brands and labelled by hand before the scorer was run on them (their errors were read later);
- "fresh 2": tests/fixtures/sentiment/fresh_posts_2.jsonl, 163 more such posts with other new
  brands, labelled before any scorer ran on them and never read for tuning afterwards.

For each: accuracy, macro-F1, negative recall, per-class precision/recall, the confusion matrix,
and per-intent precision/recall (churn, complaint, question, request, praise). Every post is scored
toward its `brand`, with the other brands of its set masked as other brands, as the pipeline does.
Then the tweets and Amazon review snippets of the VADER paper (Pearson r against the human mean),
and snippets scored per CPU second on one core. Exits 0 with a message when the data is absent
(the fresh sets are still reported).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # noqa: E402

from listener.intent import INTENTS  # noqa: E402
from listener.sentiment import Scorer  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "sentiment"
FRESH = ROOT / "tests" / "fixtures" / "sentiment" / "fresh_posts.jsonl"
FRESH_2 = ROOT / "tests" / "fixtures" / "sentiment" / "fresh_posts_2.jsonl"
LABELS = ("negative", "neutral", "positive")
CUSTOMER_VOICE = "customer_voice_intents.jsonl"
RATED = {"tweets": "tweets_GroundTruth.txt", "amazon": "amazonReviewSnippets_GroundTruth.txt"}
# The product's promises, checked on the posts not used for tuning (held-out and fresh).
TARGETS = {
    "accuracy": 0.85,
    "negative_recall": 0.85,
    "churn_precision": 0.85,
    "churn_recall": 0.80,
    "question_recall": 0.85,
    "snippets_per_s": 5000,
    "r_slack": 0.01,  # as tests/test_sentiment.py: listener was 0.0003 below plain VADER before intents
}


@dataclass(frozen=True)
class Post:
    text: str
    label: str
    brand: str
    intents: tuple[str, ...]


def tuned_part(text: str) -> bool:
    """The deterministic split: ~60% tuned, ~40% held out, both copies of a pair together."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % 10 < 6


def load_posts(path: Path) -> list[Post]:
    posts = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                posts.append(Post(row["text"], row["label"], row["brand"], tuple(row["intents"])))
    return posts


def brand_terms(brand: str) -> tuple[str, ...]:
    """How a config would name a brand: its name, its first word, and the name without spaces."""
    words = brand.split()
    terms = {brand, brand.replace(" ", "")}
    if len(words) > 1 and len(words[0]) >= 4:
        terms.add(words[0])
    return tuple(sorted(terms))


def load_rated(path: Path) -> list[tuple[float, str]]:
    """VADER ground-truth TSV: id, mean rating (-4..4), text. CRLF; a BOM on some files."""
    rows = []
    with path.open(encoding="utf-8-sig", newline="") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if line:
                _id, mean, text = line.split("\t", 2)
                rows.append((float(mean), text))
    return rows


def human_label(mean: float) -> str:
    return "positive" if mean >= 0.2 else "negative" if mean <= -0.2 else "neutral"


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Engine:
    name: str
    # text, terms of the brand, terms of the other brands -> (compound, label, intents)
    score: Callable[[str, Sequence[str], Sequence[str]], tuple[float, str, tuple[str, ...]]]
    # A new engine of the same kind, with nothing remembered: see `speed`.
    fresh: Callable[[], Engine] | None = None


def plain_vader() -> Engine:
    analyzer = SentimentIntensityAnalyzer()

    def score(text: str, _mask: Sequence[str], _others: Sequence[str]) -> tuple[float, str, tuple]:
        c = analyzer.polarity_scores(text)["compound"]
        return c, "positive" if c >= 0.05 else "negative" if c <= -0.05 else "neutral", ()

    return Engine("plain VADER", score)


def listener_scorer() -> Engine:
    scorer = Scorer()

    def score(text: str, mask: Sequence[str], others: Sequence[str]) -> tuple[float, str, tuple]:
        s = scorer.score(text, neutralise=mask, others=others)
        return s.compound, s.label, s.intents

    return Engine("listener", score, fresh=listener_scorer)


def classification(gold: list[str], predicted: list[str]) -> dict:
    confusion = {g: {p: 0 for p in LABELS} for g in LABELS}
    for g, p in zip(gold, predicted, strict=True):
        confusion[g][p] += 1
    per_class = {}
    for label in LABELS:
        tp = confusion[label][label]
        predicted_n = sum(confusion[g][label] for g in LABELS)
        gold_n = sum(confusion[label].values())
        precision = tp / predicted_n if predicted_n else 0.0
        recall = tp / gold_n if gold_n else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "n": gold_n}
    correct = sum(confusion[label][label] for label in LABELS)
    return {
        "n": len(gold),
        "accuracy": correct / len(gold) if gold else math.nan,
        "macro_f1": statistics.fmean(per_class[label]["f1"] for label in LABELS),
        "per_class": per_class,
        "confusion": confusion,  # rows: human label, columns: predicted
    }


def intent_scores(gold: list[tuple[str, ...]], predicted: list[tuple[str, ...]]) -> dict:
    out = {}
    for intent in INTENTS:
        tp = sum(intent in g and intent in p for g, p in zip(gold, predicted, strict=True))
        n_pred = sum(intent in p for p in predicted)
        n_gold = sum(intent in g for g in gold)
        out[intent] = {
            "precision": tp / n_pred if n_pred else math.nan,
            "recall": tp / n_gold if n_gold else math.nan,
            "n": n_gold,
        }
    return out


def pearson(xs: list[float], ys: list[float]) -> float:
    return statistics.correlation(xs, ys) if len(xs) > 1 else math.nan


def speed(
    engine: Engine, work: list[tuple[str, tuple[str, ...], tuple[str, ...]]], seconds: float
) -> float:
    """Snippets per CPU second of this single thread, over the posts repeated for `seconds`.

    CPU time rather than wall time: the machines are shared, and time spent waiting for the
    core is not the scorer's. Each pass over the posts gets a fresh engine (built outside the
    timing) where the engine remembers what it read: a service rarely reads the same sentence
    twice, and a warm memory read ~2x faster than what it is measuring.
    """
    engine.score(*work[0])  # warm caches (compiled brand patterns), as a running service has
    n = 0
    spent = 0.0
    while spent < seconds:
        if engine.fresh is not None:
            engine = engine.fresh()
            engine.score(*work[0])
        start = time.process_time()
        for text, mask, others in work:
            engine.score(text, mask, others)
        spent += time.process_time() - start
        n += len(work)
    return n / spent


def evaluate(engine: Engine, posts: list[Post]) -> dict:
    brands = sorted({p.brand for p in posts})
    terms = {b: brand_terms(b) for b in brands}
    scored = []
    for p in posts:
        others = tuple(t for b in brands if b != p.brand for t in terms[b])
        scored.append(engine.score(p.text, terms[p.brand], others))
    out = classification([p.label for p in posts], [label for _, label, _ in scored])
    out["intents"] = intent_scores([p.intents for p in posts], [i for _, _, i in scored])
    return out


def work_items(posts: list[Post]) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    brands = sorted({p.brand for p in posts})
    return [
        (
            p.text,
            brand_terms(p.brand),
            tuple(t for b in brands if b != p.brand for t in brand_terms(b)),
        )
        for p in posts
    ]


def run(data: Path | None, seconds: float) -> dict:
    sets: dict[str, list[Post]] = {}
    if data is not None:
        everything = load_posts(data / CUSTOMER_VOICE)
        sets["tuned"] = [p for p in everything if tuned_part(p.text)]
        sets["held-out"] = [p for p in everything if not tuned_part(p.text)]
    sets["fresh"] = load_posts(FRESH)
    sets["fresh 2"] = load_posts(FRESH_2)
    rated = {name: load_rated(data / file) for name, file in RATED.items()} if data else {}
    results: dict = {"data": str(data), "sets": {k: len(v) for k, v in sets.items()}, "engines": {}}
    for engine in (plain_vader(), listener_scorer()):
        out: dict = {name: evaluate(engine, posts) for name, posts in sets.items()}
        for name, rows in rated.items():
            scored = [engine.score(text, (), ()) for _, text in rows]
            out[name] = {
                "n": len(rows),
                "pearson_r": pearson([m for m, _ in rows], [c for c, _, _ in scored]),
            }
        work = [w for posts in sets.values() for w in work_items(posts)]
        out["snippets_per_s"] = speed(engine, work, seconds)
        results["engines"][engine.name] = out
    return results


# --------------------------------------------------------------------------------------------


def render(results: dict) -> str:
    engines = results["engines"]
    ours, plain = engines["listener"], engines["plain VADER"]
    sets = list(results["sets"])
    lines = [f"data: {results['data']}", ""]
    width = 14

    def row(label: str, values: list[str]) -> None:
        lines.append(f"{label:<30}" + "".join(f"{v:>{width}}" for v in values))

    row("listener", [f"{s} ({results['sets'][s]})" if len(s) < 8 else s for s in sets])
    row("  accuracy", [f"{ours[s]['accuracy']:.3f}" for s in sets])
    row("  accuracy, plain VADER", [f"{plain[s]['accuracy']:.3f}" for s in sets])
    row("  macro-F1", [f"{ours[s]['macro_f1']:.3f}" for s in sets])
    for label in LABELS:
        row(
            f"  {label} P / R",
            [
                f"{ours[s]['per_class'][label]['precision']:.2f}/"
                f"{ours[s]['per_class'][label]['recall']:.2f}"
                for s in sets
            ],
        )
    for intent in INTENTS:
        row(
            f"  intent {intent} P / R",
            [
                f"{ours[s]['intents'][intent]['precision']:.2f}/"
                f"{ours[s]['intents'][intent]['recall']:.2f}"
                for s in sets
            ],
        )
    row("  posts per set", [str(results["sets"][s]) for s in sets])
    lines.append("  confusion (rows: human; columns: predicted neg neu pos)")
    for label in LABELS:
        row(
            f"    {label}",
            [" ".join(f"{ours[s]['confusion'][label][p]:>3}" for p in LABELS) for s in sets],
        )
    lines.append("")
    for name in RATED:
        if name in ours:
            lines.append(
                f"{name} ({ours[name]['n']}): Pearson r {ours[name]['pearson_r']:.3f} "
                f"(plain VADER {plain[name]['pearson_r']:.3f})"
            )
    lines.append(
        f"snippets per CPU second, one core: {ours['snippets_per_s']:,.0f} "
        f"(plain VADER {plain['snippets_per_s']:,.0f})"
    )
    untuned = [s for s in sets if s != "tuned"]
    checks = []
    for s in untuned:
        o = ours[s]
        checks += [
            (f"{s}: accuracy >= 0.85", o["accuracy"] >= TARGETS["accuracy"]),
            (
                f"{s}: negative recall >= 0.85",
                o["per_class"]["negative"]["recall"] >= TARGETS["negative_recall"],
            ),
            (
                f"{s}: churn precision >= 0.85",
                o["intents"]["churn"]["precision"] >= TARGETS["churn_precision"],
            ),
            (
                f"{s}: churn recall >= 0.80",
                o["intents"]["churn"]["recall"] >= TARGETS["churn_recall"],
            ),
            (
                f"{s}: question recall >= 0.85",
                o["intents"]["question"]["recall"] >= TARGETS["question_recall"],
            ),
        ]
    for name in RATED:
        if name in ours:
            checks.append(
                (
                    f"{name} r >= plain VADER's - 0.01",
                    ours[name]["pearson_r"] >= plain[name]["pearson_r"] - TARGETS["r_slack"],
                )
            )
    checks.append(("snippets/s >= 5,000", ours["snippets_per_s"] >= TARGETS["snippets_per_s"]))
    lines.append("")
    lines += [f"{'PASS' if ok else 'FAIL'}  {what}" for what, ok in checks]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="sentiment data folder")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per speed measurement")
    args = parser.parse_args(argv)

    data: Path | None = args.data
    missing = [f for f in (CUSTOMER_VOICE, *RATED.values()) if not (args.data / f).is_file()]
    if missing:
        print(f"note: sentiment data not found in {args.data} (missing {', '.join(missing)});")
        print("reporting the fresh posts only; pass --data pointing at shared/data/sentiment")
        data = None
    if hasattr(os, "sched_setaffinity"):  # one core, as promised; the machine is shared
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    results = run(data, args.seconds)
    print(json.dumps(results, indent=2) if args.json else render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
