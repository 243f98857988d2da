"""Matcher cost per item: brand terms only vs brand queries, for 1, 10 and 100 brands, beside
the matcher as it was before queries (loaded from git), all in one run.

    .venv/bin/python bench/match_bench.py                # ~20 s
    .venv/bin/python bench/match_bench.py --items 500    # quicker
    .venv/bin/python bench/match_bench.py --before REV   # the "before" matcher from REV

Texts are synthetic posts of 200-1500 characters from an everyday vocabulary; one in five
names one of the brands (as the company or as the common word), one in ten has a link.
Figures are microseconds per item (median of --repeat runs over all items), matching only: no
scoring. "before" is `listener/match.py` at --before (default: the commit before queries).
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from listener.match import Matcher  # noqa: E402
from listener.models import Brand, Item  # noqa: E402

_WORDS = (
    "the a of and to in is it that for on with as was this be are by at from or an have not "
    "they we you our team work time day people year new good great first last long little own "
    "other old right big high different small large next early young important few public bad "
    "same able data project plan sprint issue notes page bank card account planet deck slides "
    "presentation camp trek summit music album idea model growth release support app today "
    "weekend coffee weather city market price store order customer product service update"
)
WORDS = _WORDS.split()
_CONTEXT = (
    "issue issues tracker ticket tickets sprint roadmap backlog workspace integration pricing "
    "support API app startup team projects docs template bank account card"
)
CONTEXT = _CONTEXT.split()
COMMON = ["Linear", "Notion", "Mercury", "Basecamp", "Pitch", "Apple", "Amazon", "Shell"]


def brand_names(n: int) -> list[str]:
    return [COMMON[i] if i < len(COMMON) else f"Brandname{i}" for i in range(n)]


def brands(n: int, *, queries: bool) -> list[Brand]:
    out = []
    for name in brand_names(n):
        domain = f"{name.lower()}.com"
        if not queries:
            out.append(Brand(name, (name, domain), exclude=(f"{name} Brick",)))
            continue
        context = " OR ".join(CONTEXT)
        query = (
            f"{domain} OR @{name.lower()} OR ({name} NEAR/6 ({context})) "
            f'AND NOT ("{name.lower()} algebra" OR "{name.lower()} of" OR retrograde)'
        )
        out.append(Brand(name, (), exclude=(f"{name} Brick",), query=query))
    return out


def texts(count: int, names: list[str], seed: int = 7) -> list[Item]:
    rnd = random.Random(seed)
    items = []
    for i in range(count):
        words = [rnd.choice(WORDS) for _ in range(rnd.randint(35, 250))]
        if rnd.random() < 0.2:
            name = rnd.choice(names)
            words.insert(rnd.randrange(len(words)), rnd.choice([name, name.lower(), f"#{name}"]))
        if rnd.random() < 0.1:
            words.insert(
                rnd.randrange(len(words)), f"https://example.com/p?ref={rnd.choice(names)}"
            )
        text = " ".join(words).capitalize() + "."
        items.append(Item("bench", str(i), f"https://example.com/{i}", "", text))
    return items


def load_before(rev: str) -> object:
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:listener/match.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "match_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("match_before", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["match_before"] = module
    spec.loader.exec_module(module)
    return module


def per_item_us(match: object, items: list[Item], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            match(item)  # type: ignore[operator]
        runs.append((time.perf_counter() - start) / len(items) * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--before", default="f15a6b0", help="git revision of the old matcher")
    args = parser.parse_args()
    before = load_before(args.before)
    print(f"{args.items} items, median of {args.repeat} runs, µs per item (matching only)")
    print(
        f"{'brands':>6} {'before: terms':>14} {'now: terms':>11} {'now: queries':>13} {'compile':>9}"
    )
    for n in (1, 10, 100):
        items = texts(args.items, brand_names(n))
        old = before.Matcher.from_brands(brands(n, queries=False))  # type: ignore[attr-defined]
        new_terms = Matcher.from_brands(brands(n, queries=False))
        start = time.perf_counter()
        new_queries = Matcher.from_brands(brands(n, queries=True))
        compile_ms = (time.perf_counter() - start) * 1e3

        def old_match(item: Item, m: object = old) -> object:
            return m.match(f"{item.title}\n{item.text}" if item.title else item.text)  # type: ignore[attr-defined]

        a = per_item_us(old_match, items, args.repeat)
        b = per_item_us(new_terms.match_item, items, args.repeat)
        c = per_item_us(new_queries.match_item, items, args.repeat)
        print(f"{n:>6} {a:>14.1f} {b:>11.1f} {c:>13.1f} {compile_ms:>7.0f}ms")


if __name__ == "__main__":
    main()
