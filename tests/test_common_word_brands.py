"""Done-when of issue 13: companies whose names are common words (Linear, Notion, Mercury,
Basecamp, Pitch), configured with the rule a marketer would write, keep the posts about the
company and drop the others. The posts (tests/fixtures/common_word_brands/posts.jsonl) are the
hard cases: lowercase product use, sentence-initial common use, hashtags, names inside links'
query strings, domains, and posts that use both senses."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from listener.config import load_config
from listener.match import Matcher
from listener.models import Brand

FIXTURES = Path(__file__).parent / "fixtures" / "common_word_brands"
POSTS = [json.loads(line) for line in (FIXTURES / "posts.jsonl").read_text().splitlines()]
NAMES = ["Linear", "Notion", "Mercury", "Basecamp", "Pitch"]


@pytest.fixture(scope="module")
def matcher(tmp_path_factory: pytest.TempPathFactory) -> Matcher:
    """The rules as a user writes them: sources.yaml `brands:`, loaded by the config loader."""
    brands = textwrap.indent((FIXTURES / "brands.yaml").read_text(), "  ")
    path = tmp_path_factory.mktemp("cwb") / "sources.yaml"
    path.write_text(f"database: m.db\nbrands:\n{brands}sources: []\n")
    config = load_config(path, env={})
    assert [b.name for b in config.brands] == NAMES
    return Matcher.from_brands(config.brands)


def rates(matcher: Matcher, name: str) -> tuple[float, float]:
    """(share of the posts about the company kept, share of the other posts dropped)."""
    posts = [p for p in POSTS if p["brand"] == name]
    named = [name in {m.brand for m in matcher.match(p["text"])} for p in posts]
    about = [n for p, n in zip(posts, named, strict=True) if p["about"]]
    other = [n for p, n in zip(posts, named, strict=True) if not p["about"]]
    assert len(about) >= 20 and len(other) >= 20
    return sum(about) / len(about), 1 - sum(other) / len(other)


@pytest.mark.parametrize("name", NAMES)
def test_a_query_keeps_the_company_and_drops_the_common_word(matcher: Matcher, name: str) -> None:
    kept, dropped = rates(matcher, name)
    assert kept >= 0.95, f"{name}: kept {kept:.2f} of the posts about the company"
    assert dropped >= 0.90, f"{name}: dropped {dropped:.2f} of the other posts"


@pytest.mark.parametrize("case_sensitive", [False, True])
def test_the_posts_are_hard_for_a_plain_term(case_sensitive: bool) -> None:
    """What `terms:` alone (listener before queries) makes of the same posts: either nearly all
    the noise, or a third of it and lost posts about the company."""
    worst = []
    for name in NAMES:
        matcher = Matcher.from_brands([Brand(name, (name,), case_sensitive=case_sensitive)])
        kept, dropped = rates(matcher, name)
        worst.append(min(kept - 0.95, dropped - 0.90))
    assert min(worst) < -0.05
