"""Brand matching, snippets and the text sentiment is scored on: what a user sees in a mention."""

from __future__ import annotations

import re
import unicodedata

import pytest

from listener.match import Matcher, scoring_text, snippet_around
from listener.models import Brand, Match, Product

# The example brand of DESIGN.md (sources.yaml `brands:`).
ACME = Brand(
    name="Acme",
    terms=("Acme", "Acme Corp", "acme.com", "@acme"),
    exclude=("Acme Brick",),
    products=(Product("Rocket Skates", ("Rocket Skates", "RocketSkates")),),
)
ACME_MATCHER = Matcher.from_brands([ACME])


def found(text: str, matcher: Matcher = ACME_MATCHER, links: tuple[str, ...] = ()) -> list[str]:
    """The matched spans' text, all brands together, in text order."""
    spans = sorted({s for m in matcher.match(text, links=links) for s in m.spans})
    return [text[a:b] for a, b in spans]


# --- word boundaries ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Acme", ["Acme"]),
        ("I like Acme's skates", ["Acme"]),
        ("I like Acme’s skates", ["Acme"]),
        ("loving it #acme", ["acme"]),
        ("thanks @acme!", ["@acme"]),
        ("the vendor (Acme) shipped", ["Acme"]),
        ("Bought it from Acme.", ["Acme"]),
        ('"Acme", she said', ["Acme"]),
        ("pre-acme era", ["acme"]),  # a hyphen is a boundary
        ("an Acme-powered rig", ["Acme"]),
        ("ACME IS GREAT", ["ACME"]),  # case-insensitive by default
        ("welcome to Acmeville", []),
        ("AcmeCorp is not a term", []),
        ("MegaAcme", []),
        ("acme_corp", []),  # underscore is a word character
        ("Acme2 beta", []),
        ("", []),
    ],
)
def test_word_boundaries(text: str, expected: list[str]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    ("term", "text", "expected"),
    [
        ("C++", "I write C++ every day", ["C++"]),
        ("C++", "ObjC++ is different", []),
        ("@acme", "ping @acme please", ["@acme"]),
        (".NET", "built on .NET today", [".NET"]),
        ("Café Müller", "dinner at CAFÉ MÜLLER tonight", ["CAFÉ MÜLLER"]),
        ("Café", "two Cafés", []),
        ("Café", unicodedata.normalize("NFD", "the Café"), [unicodedata.normalize("NFD", "Café")]),
        ("Cafe", unicodedata.normalize("NFD", "the Café"), []),  # the accent is part of the word
        ("Ärzte", "die ärzte spielen", ["ärzte"]),
        ("索尼", "我喜欢索尼的产品", ["索尼"]),  # CJK: no word boundary needed
        ("삼성", "삼성은 좋아요", ["삼성"]),  # a Korean particle attached
        ("Acme", "我喜欢Acme产品", ["Acme"]),  # a Latin name inside CJK text
        ("Macy's", "shopping at Macy’s", ["Macy’s"]),  # any apostrophe
        ("Acme Corp", "Acme\u00a0Corp again", ["Acme\u00a0Corp"]),  # any whitespace
        ("Istanbul", "İSTANBUL trip", ["İSTANBUL"]),  # case folding changes the text's length
        ("Acme", "die Straße von Acme", ["Acme"]),  # ditto (ß), the whole-text scan path
    ],
)
def test_term_shapes_and_unicode(term: str, text: str, expected: list[str]) -> None:
    matcher = Matcher.from_brands([Brand("B", (term,))])
    assert found(text, matcher) == expected


# --- what one Match holds ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Acme, acme and ACME",
            [Match("Acme", None, ("Acme", "acme", "ACME"), ((0, 4), (6, 10), (15, 19)))],
        ),
        ("I work at Acme Corp.", [Match("Acme", None, ("Acme Corp",), ((10, 19),))]),
        (
            "My RocketSkates broke",  # a product term alone implies the brand
            [Match("Acme", "Rocket Skates", ("RocketSkates",), ((3, 15),))],
        ),
        (
            "Acme makes Rocket Skates",
            [Match("Acme", "Rocket Skates", ("Acme", "Rocket Skates"), ((0, 4), (11, 24)))],
        ),
        ("Nothing to see here", []),
    ],
)
def test_match_contents(text: str, expected: list[Match]) -> None:
    assert ACME_MATCHER.match(text) == expected


def test_product_is_the_first_one_named_in_text_order() -> None:
    brand = Brand(
        "Acme",
        ("Acme",),
        products=(Product("Rocket Skates", ("Rocket Skates",)), Product("Jet Pack", ("Jet Pack",))),
    )
    [m] = Matcher.from_brands([brand]).match("The Jet Pack beats the Rocket Skates, says Acme")
    assert m.product == "Jet Pack"
    assert m.terms == ("Jet Pack", "Rocket Skates", "Acme")


def test_two_brands_in_one_text_give_two_matches_in_text_order() -> None:
    matcher = Matcher.from_brands([ACME, Brand("Initech", ("Initech", "TPS"))])
    matches = matcher.match("Initech's TPS reports beat anything Acme sells.")
    assert [(m.brand, m.terms) for m in matches] == [
        ("Initech", ("Initech", "TPS")),
        ("Acme", ("Acme",)),
    ]


# --- case sensitivity --------------------------------------------------------------------------

APPLE = Brand("Apple", ("Apple", "iPhone"), exclude=("Apple Pie",), case_sensitive=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Apple released it", ["Apple"]),
        ("an apple a day", []),
        ("APPLE", []),
        ("my iPhone", ["iPhone"]),
        ("my IPHONE", []),
        ("Apple Pie recipe", []),  # excluded, with the brand's case
        ("Apple pie recipe", ["Apple"]),  # "pie" is not "Pie": not the excluded phrase
    ],
)
def test_case_sensitive_brand(text: str, expected: list[str]) -> None:
    assert found(text, Matcher.from_brands([APPLE])) == expected


def test_case_sensitive_and_insensitive_brands_sharing_a_term() -> None:
    matcher = Matcher.from_brands([APPLE, Brand("Orchard", ("apple",))])
    assert [m.brand for m in matcher.match("apple harvest")] == ["Orchard"]
    assert [m.brand for m in matcher.match("Apple harvest")] == ["Apple", "Orchard"]


# --- exclusions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Acme Brick makes bricks.", []),
        ("ACME BRICK makes bricks.", []),  # the brand is case-insensitive, so is its exclusion
        ("Acme Brick is not Acme.", ["Acme"]),
        ("Acme bricked my phone", ["Acme"]),  # whole words only
        ("Acme, Brick", ["Acme"]),
    ],
)
def test_exclusions(text: str, expected: list[str]) -> None:
    assert found(text) == expected


def test_exclusion_keeps_the_match_outside_it() -> None:
    [m] = ACME_MATCHER.match("Acme Brick is not Acme.")
    assert m.spans == ((18, 22),)


def test_a_match_only_partly_inside_an_exclusion_still_counts() -> None:
    matcher = Matcher.from_brands([Brand("Acme", ("Rocket Skates",), exclude=("Team Rocket",))])
    assert found("Team Rocket Skates rule", matcher) == ["Rocket Skates"]


def test_exclusion_is_per_brand() -> None:
    matcher = Matcher.from_brands([ACME, Brand("Brickworks", ("Acme Brick",))])
    assert [(m.brand, m.terms) for m in matcher.match("Acme Brick ships")] == [
        ("Brickworks", ("Acme Brick",))
    ]


# --- domains and links -------------------------------------------------------------------------

INITECH = Brand("Initech", (), domains=("initech.com",))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see initech.com for details", ["initech.com"]),
        ("see INITECH.COM", ["INITECH.COM"]),
        ("https://mail.initech.com/login", ["initech.com"]),
        ("write to bob@initech.com.", ["initech.com"]),
        ("notinitech.com", []),
        ("not-initech.com", []),
        ("initech.com.au", []),
        ("initech.community", []),
    ],
)
def test_domains_in_text(text: str, expected: list[str]) -> None:
    assert found(text, Matcher.from_brands([INITECH])) == expected


@pytest.mark.parametrize(
    ("links", "linked"),
    [
        (("https://www.acme.com/x",), True),
        (("http://sub.acme.com",), True),
        (("HTTPS://ACME.COM",), True),
        (("acme.com/path",), True),  # as written in a post, without a scheme
        (("https://notacme.com",), False),
        (("https://acme.com.evil.net/x",), False),
        (("https://example.org/acme.com",), False),
        (("http://[broken",), False),
        ((), False),
    ],
)
def test_links(links: tuple[str, ...], linked: bool) -> None:
    matches = ACME_MATCHER.match("No name in this text.", links=links)
    expected = [Match("Acme", None, ("acme.com",), ())] if linked else []
    assert matches == expected


def test_brand_domains_match_links_too() -> None:
    [m] = Matcher.from_brands([INITECH]).match("", links=["https://jobs.initech.com/"])
    assert (m.brand, m.terms, m.spans) == ("Initech", ("initech.com",), ())


def test_text_mention_and_link_make_one_match() -> None:
    assert ACME_MATCHER.match("Acme here", links=["https://acme.com/"]) == [
        Match("Acme", None, ("Acme", "acme.com"), ((0, 4),))
    ]


# --- overlapping terms -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("brands", "text", "expected"),
    [
        # The longest term wins, whichever brand lists it.
        (
            [Brand("A", ("Acme",)), Brand("B", ("Acme Rocket",))],
            "the Acme Rocket launch",
            [("B", ("Acme Rocket",))],
        ),
        (
            [Brand("A", ("Acme",)), Brand("B", ("Acme Rocket",))],
            "the Acme launch",
            [("A", ("Acme",))],
        ),
        # Overlapping from different starts: still the longer one.
        (
            [Brand("A", ("Big Acme",)), Brand("B", ("Acme Rocket Skates",))],
            "a Big Acme Rocket Skates deal",
            [("B", ("Acme Rocket Skates",))],
        ),
        # Both brands list the same term: both are mentioned.
        (
            [Brand("A", ("Acme",)), Brand("B", ("ACME", "Bolt"))],
            "Acme and Bolt",
            [("A", ("Acme",)), ("B", ("Acme", "Bolt"))],
        ),
        # Within one brand: "Acme Corp" is one term, not "Acme" plus a leftover.
        ([ACME], "Acme Corp and @acme", [("Acme", ("Acme Corp", "@acme"))]),
        ([ACME], "visit acme.com", [("Acme", ("acme.com",))]),
    ],
)
def test_overlapping_terms(
    brands: list[Brand], text: str, expected: list[tuple[str, tuple[str, ...]]]
) -> None:
    assert [(m.brand, m.terms) for m in Matcher.from_brands(brands).match(text)] == expected


def test_overlapping_terms_count_each_span_once() -> None:
    [m] = ACME_MATCHER.match("Acme Corp")
    assert m.spans == ((0, 9),)


# --- configuration -----------------------------------------------------------------------------


def test_neutral_terms_are_the_brand_and_product_words() -> None:
    assert ACME_MATCHER.neutral_terms("Acme") == (
        "Acme",
        "Acme Corp",
        "acme.com",
        "@acme",
        "Rocket Skates",
        "RocketSkates",
    )
    with pytest.raises(KeyError, match="Nope"):
        ACME_MATCHER.neutral_terms("Nope")


@pytest.mark.parametrize(
    ("brands", "message"),
    [
        ([Brand("A", ("x",)), Brand("A", ("y",))], "unique"),
        ([Brand("A", ("x", "  "))], "empty term"),
        ([Brand("A", ("x",), products=(Product("P", ("",)),))], "product 'P'"),
        ([Brand("A", ("x",), domains=("not a domain",))], "not a domain"),
    ],
)
def test_bad_brands_are_rejected(brands: list[Brand], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Matcher.from_brands(brands)


def test_no_brands_match_nothing() -> None:
    assert Matcher.from_brands([]).match("Acme", links=["https://acme.com"]) == []


FILLER = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed"]
PLANTS = [
    ("Acme", True),
    ("acme corp", True),
    ("RocketSkates", True),
    ("@ACME", True),
    ("Apple", True),
    ("apple", False),
    ("Acmeville", False),
    ("Acme Brick", False),
    ("rocket", False),
]


@pytest.mark.parametrize("prefix", ["", "Straße: "])  # the prefilter path, the whole-text scan
def test_every_planted_mention_is_found_and_no_decoy(prefix: str) -> None:
    matcher = Matcher.from_brands([ACME, APPLE])
    for i in range(120):
        words = [FILLER[(i + j) % len(FILLER)] for j in range(25)]
        planted = [PLANTS[(i + k) % len(PLANTS)] for k in range(i % 4)]
        for k, (plant, _) in enumerate(planted):
            words.insert((i + 7 * k) % (len(words) + 1), plant)
        text = prefix + " ".join(words)
        expected = [w for w in words if any(w == plant and real for plant, real in planted)]
        assert found(text, matcher) == expected, text


# --- snippets ----------------------------------------------------------------------------------

LONG = (
    "The weather was mild all week and nobody complained about it at all. "
    "Our team went to the park, then to the market, then back home for dinner. "
    "Somewhere in the middle of a very long and winding sentence that goes on and on about many "
    "unrelated things, someone said that the Acme Rocket Skates were the best purchase of the "
    "year, which surprised everyone who had heard the stories about them before that day. "
    "Later we talked about books. Then we slept."
)


@pytest.mark.parametrize("max_chars", [30, 60, 100, 160, 240, 320, 1000])
@pytest.mark.parametrize("term", ["weather", "Acme Rocket Skates", "slept"])
def test_snippet_fits_and_shows_the_term(max_chars: int, term: str) -> None:
    start = LONG.index(term)
    snippet = snippet_around(LONG, [(start, start + len(term))], max_chars=max_chars)
    assert len(snippet) <= max_chars
    assert term in snippet
    # Cut at word boundaries only: every word shown is a whole word of the text.
    words = set(LONG.split())
    assert all(w in words for w in snippet.strip("…").split()), snippet


def test_snippet_is_whole_sentences_when_they_fit() -> None:
    text = "Traffic was bad.  Acme shipped my order.\nIt arrived today."
    start = text.index("Acme")
    assert snippet_around(text, [(start, start + 4)]) == (
        "Traffic was bad. Acme shipped my order. It arrived today."
    )
    assert snippet_around(text, [(start, start + 4)], max_chars=40) == (
        "Acme shipped my order. It arrived today."
    )
    assert snippet_around(text, [(start, start + 4)], max_chars=25) == "Acme shipped my order."


def test_snippet_of_a_long_sentence_is_trimmed_with_ellipses() -> None:
    start = LONG.index("Acme")
    snippet = snippet_around(LONG, [(start, start + 4)], max_chars=80)
    assert snippet.startswith("…") and snippet.endswith("…")
    assert "Acme" in snippet


def test_snippet_without_spans_is_the_start_of_the_text() -> None:
    assert snippet_around("First. Second.", [], max_chars=8) == "First."
    assert snippet_around("", []) == ""


def test_snippet_rejects_spans_outside_the_text() -> None:
    with pytest.raises(ValueError, match="outside"):
        snippet_around("short", [(3, 40)])


# --- scoring text ------------------------------------------------------------------------------


def spans_of(text: str, *terms: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for t in terms for m in re.finditer(re.escape(t), text)]


@pytest.mark.parametrize(
    ("text", "terms", "expected"),
    [
        (
            "The traffic was awful this morning. Acme Rocket Skates are wonderful. See you.",
            ("Acme",),
            "Acme Rocket Skates are wonderful.",
        ),
        (
            "I love Acme support. The weather is terrible. But Acme shipping is slow.",
            ("Acme",),
            "I love Acme support. But Acme shipping is slow.",
        ),
        (
            # A very short match sentence (a title) brings the next one along.
            "Acme Rocket Skates.\nThey broke on day one. Lovely weather though.",
            ("Acme Rocket Skates",),
            "Acme Rocket Skates. They broke on day one.",
        ),
        (
            "Re: Acme\nTotally useless product. Nice cat pictures.",
            ("Acme",),
            "Re: Acme Totally useless product.",
        ),
        ("Only Acme here", ("Acme",), "Only Acme here"),
    ],
)
def test_scoring_text_is_about_the_brand(text: str, terms: tuple[str, ...], expected: str) -> None:
    assert scoring_text(text, spans_of(text, *terms)) == expected


def test_scoring_text_without_spans_is_the_whole_text() -> None:
    assert scoring_text("Linked only.  Good post.", []) == "Linked only. Good post."


def test_scoring_text_from_a_real_match() -> None:
    text = "Traffic was awful. My RocketSkates from Acme are brilliant! Weather: dreadful."
    [m] = ACME_MATCHER.match(text)
    assert scoring_text(text, m.spans) == "My RocketSkates from Acme are brilliant!"
    assert "RocketSkates" in snippet_around(text, m.spans, max_chars=45)
