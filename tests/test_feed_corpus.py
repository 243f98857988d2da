"""parse_feed over feedparser's own test corpus (2,107 hand-written edge cases).

The corpus lives outside the project (../shared/data/feeds/feedparser from the repository root);
these tests skip when it is absent. Each file carries an `Expect:` line, a Python expression over
feedparser's result. It is never evaluated: the simple title checks are translated into ours.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from listener.parse import NotAFeed, ParsedFeed, parse_feed
from listener.text import html_to_text, normalise_text

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "feeds" / "feedparser"
# The corpus tests resolved relative URLs against this server.
BASE_URL = "http://127.0.0.1:8097/"

# Files that are not feeds, and why.
EXPECTED_NOT_A_FEED = {
    "illformed/rss_empty_document.xml": "a comment and nothing else",
}

# Title checks where we knowingly differ from feedparser, and why.
KNOWN_TITLE_DIFFERENCES = {
    # HTML5 maps &lang;/&rang; to U+27E8/U+27E9; feedparser keeps HTML 4's U+2329/U+232A.
    "entities/lang.xml": "HTML5 entity table",
    "entities/rang.xml": "HTML5 entity table",
    # An unclosed comment swallows the rest, as in a browser; feedparser's sanitizer keeps "fe".
    "wellformed/sanitize/xml_malicious_comment.xml": "HTML5 comment parsing",
    # "<!DOCTYPE ~" in an HTML title is markup to an HTML parser, text to feedparser.
    "wellformed/sanitize/xml_declaration_unexpected_character.xml": "HTML5 parsing",
    # Atom 1.0 text constructs of a non-text type (base64) and markup outside type="xhtml":
    # invented for the test suite, not seen in real feeds; fastfeedparser reads them as text.
    "wellformed/atom10/entry_title_base64.xml": "base64 title",
    "wellformed/atom10/entry_title_base64_2.xml": "base64 title",
    "wellformed/atom10/feed_title_base64.xml": "base64 title",
    "wellformed/atom10/feed_title_base64_2.xml": "base64 title",
    "wellformed/atom/entry_title_naked_markup.xml": "markup in a text title",
    "wellformed/atom/feed_title_naked_markup.xml": "markup in a text title",
    # Feed titles only in itunes:title / dc:title, and media:title preferred to title: the fast
    # parser reads the core element only.
    "wellformed/itunes/itunes_core_element_uppercase.xml": "itunes:title only",
    "wellformed/rss/channel_dc_title.xml": "dc:title only",
    "wellformed/media-rss/item_media_title2.xml": "media:title vs title",
}

_HEADER = re.compile(r"^Header:\s*([\w-]+):\s*(.*?)\s*$", re.M)
_TITLE_EXPECT = re.compile(
    r"""^\s*Expect:\s*(?:not\s+bozo\s+and\s+)?(feed|entries\[0\])\[(['"])title\2\]\s*==\s*"""
    r"""(u?(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"))\s*$""",
    re.M,
)

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"no feed corpus at {CORPUS}")


def _files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.suffix in (".xml", ".json"))


def _parse(path: Path) -> ParsedFeed:
    body = path.read_bytes()
    # The test server sent these headers with the file (charset, Content-Location, ...).
    headers = dict(_HEADER.findall(body[:2000].decode("latin-1")))
    rel = path.relative_to(CORPUS).as_posix()
    return parse_feed(body, source="corpus", url=BASE_URL + rel, headers=headers)


@pytest.fixture(scope="module")
def results() -> dict[str, ParsedFeed | NotAFeed]:
    """Every corpus file through parse_feed once; any exception but NotAFeed fails the test."""
    out: dict[str, ParsedFeed | NotAFeed] = {}
    for path in _files():
        rel = path.relative_to(CORPUS).as_posix()
        try:
            out[rel] = _parse(path)
        except NotAFeed as e:
            out[rel] = e
    return out


def test_every_file_parses_or_is_explained(results):
    assert len(results) > 2000
    not_feeds = {rel: str(r) for rel, r in results.items() if isinstance(r, NotAFeed)}
    assert set(not_feeds) == set(EXPECTED_NOT_A_FEED), not_feeds


def test_every_item_is_normalised(results):
    for rel, result in results.items():
        if isinstance(result, NotAFeed):
            continue
        for item in result.items:
            assert item.url or item.native_id or item.title or item.text, rel
            assert item.thread_key, rel
            for when in (item.published_at, item.updated_at):
                assert when is None or when.utcoffset().total_seconds() == 0, rel
            assert "<script" not in item.text.lower(), rel


def _expected_title(path: Path) -> tuple[str, str] | None:
    """('feed' | 'entries[0]', title) for files whose Expect line is a simple title check."""
    head = path.read_bytes()[:2000].decode("latin-1")
    m = _TITLE_EXPECT.search(head)
    if m is None:
        return None
    # The literal alone is read (a string token, never an expression).
    value = ast.literal_eval(m.group(3))
    return m.group(1), value


def test_titles_agree_with_the_corpus_expectations(results):
    checked = 0
    disagreements = {}
    for path in _files():
        rel = path.relative_to(CORPUS).as_posix()
        expected = _expected_title(path)
        if expected is None:
            continue
        where, want = expected
        result = results[rel]
        assert not isinstance(result, NotAFeed), rel
        first_item = result.items[0].title if result.items else None
        got = result.title if where == "feed" else first_item
        # feedparser keeps HTML in titles; ours are text: compare with the expectation as text.
        # An expectation that is only markup (an <img>) is an empty title, i.e. none.
        candidates = {" ".join(html_to_text(want).split()), normalise_text(want)}
        checked += 1
        if (got or "") not in candidates:
            disagreements[rel] = (want, got)
    assert checked > 350
    unexplained = {k: v for k, v in disagreements.items() if k not in KNOWN_TITLE_DIFFERENCES}
    assert not unexplained
