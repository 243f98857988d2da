"""Brand queries (`query:` on brands and products): the language, what it keeps and drops, why,
and how a mistake in one is reported."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from listener.cli import cli
from listener.match import Context, Matcher
from listener.models import Brand, Item, Product
from listener.query import QueryError, parse

LINEAR = Brand(
    "Linear",
    (),
    query='(Linear OR linear.app) AND NOT ("linear algebra" OR "linear regression" OR equation*)',
)


def brands(text: str, *brand_list: Brand, context: Context | None = None) -> list[str]:
    return [m.brand for m in Matcher.from_brands(brand_list).match(text, context=context)]


# --- the language ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "text", "expected"),
    [
        ("Acme", "We use ACME daily", True),
        ("Acme", "Acmeville is a town", False),
        ('"rocket skates"', "my Rocket  Skates broke", True),
        ('"rocket skates"', "rocket and skates", False),
        ("acme AND skates", "acme sells skates", True),
        ("acme AND skates", "acme sells gloves", False),
        ("acme skates", "skates by acme", True),  # side by side: AND
        ("acme OR globex", "globex only", True),
        ("acme NOT brick", "acme brick", False),
        ("acme -brick", "acme brick", False),
        ("acme -brick", "acme rocks", True),
        ("a OR b AND c", "a", True),  # AND binds tighter: a OR (b AND c)
        ("(a OR b) AND c", "a", False),
        ("{Pitch}", "a sales pitch", False),  # exact case
        ("{Pitch}", "Made in Pitch", True),
        ("deploy*", "we are deploying today", True),
        ("deploy*", "redeploy", False),
        ("linear.app", "see Linear.app/features", True),  # a domain matches inside a link
        ("linear.app", "notlinear.app", False),
        ("#linear", "loving #linear today", True),
        ("pitch NEAR/2 deck", "the pitch for our new deck", False),  # 3 words between
        ("pitch NEAR/3 deck", "the pitch for our new deck", True),
        ("pitch NEAR/3 deck", "deck first, then the pitch", True),  # either order
        ("(pitch OR pitches) NEAR/1 (deck OR slides)", "pitches and slides", True),
        ("NOT acme", "nothing here", True),
    ],
)
def test_query_language(query: str, text: str, expected: bool) -> None:
    assert brands(text, Brand("B", (), query=query)) == (["B"] if expected else [])


@pytest.mark.parametrize(
    ("query", "context", "expected"),
    [
        ("title:launch", Context(title_end=10), False),  # "launch" is in the body only
        ("title:acme", Context(title_end=10), True),
        ("site:acme.com", Context(url="https://blog.acme.com/post/1"), True),
        ("site:acme.com", Context(url="https://notacme.com/post/1"), False),
        ("author:linear", Context(author="Linear"), True),
        ("author:linear", Context(author="@linear@mastodon.social"), True),
        ("author:linear", Context(author="Linearity Fan"), False),
        ("source:hn", Context(source="hn"), True),
        ("source:hn", Context(source="reddit"), False),
        ("lang:en", Context(lang="en-US"), True),
        ("lang:en", Context(lang="de"), False),
        ("lang:de", Context(), False),  # no language given: the text is detected (English)
        ("acme AND NOT site:acme.com", Context(url="https://acme.com/x"), False),
    ],
)
def test_scopes(query: str, context: Context, expected: bool) -> None:
    text = "Acme news\nWe launch Acme today"
    assert brands(text, Brand("B", (), query=query), context=context) == (["B"] if expected else [])


def test_scopes_from_an_item() -> None:
    matcher = Matcher.from_brands([Brand("B", (), query="title:acme AND author:bob AND lang:en")])
    item = Item(
        source="s",
        native_id=None,
        url="https://x.example/1",
        title="Acme launch",
        text="it is out",
        author="Bob",
        extra={"lang": "en"},
    )
    [m] = matcher.match_item(item)
    assert m.terms == ("Acme",) and m.spans == ((0, 4),)
    assert matcher.match_item(Item("s", None, "u", "Launch", "Acme is out", author="Bob")) == []


@pytest.mark.parametrize(
    ("query", "column", "expected"),
    [
        ("a AND", 6, "after AND"),
        ("(a OR b", 8, "')' to close the '(' at column 1"),
        ('"linear algebra', 1, 'a closing "'),
        ("a NEAR b", 3, "NEAR/n"),
        ("a OR OR b", 6, "after OR"),
        ("a) b", 2, "closes nothing"),
        ("title: x", 7, "after title:"),
        ("site:x NEAR/2 b", 8, "before NEAR/2"),
        ("", 1, "a word"),
    ],
)
def test_parse_errors_say_where_and_what(query: str, column: int, expected: str) -> None:
    with pytest.raises(QueryError) as err:
        parse(query)
    assert err.value.column == column
    assert expected in str(err.value)


# --- semantics: query alone, terms and query, products ------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Our team moved its sprints to Linear.", ["Linear"]),
        ("Linear algebra homework again", []),
        ("A linear regression on the data", []),
        ("solve the equations", []),
        ("Docs at https://linear.app/docs", ["Linear"]),
    ],
)
def test_query_alone_makes_a_mention(text: str, expected: list[str]) -> None:
    assert brands(text, LINEAR) == expected


def test_query_alone_anchors_the_snippet_on_its_positive_words() -> None:
    text = "Nice weather. We switched to Linear last week. Algebra is fun."
    [m] = Matcher.from_brands([LINEAR]).match(text)
    assert m.terms == ("Linear",)
    assert [text[a:b] for a, b in m.spans] == ["Linear"]


def test_terms_and_query_both_must_hold() -> None:
    acme = Brand("Acme", ("Acme",), query="skates OR gloves")
    assert brands("Acme skates are great", acme) == ["Acme"]
    assert brands("Acme is a company", acme) == []  # the query does not hold
    assert brands("skates and gloves", acme) == []  # no term named


def test_brand_query_gates_its_products_and_a_product_query_stands_alone() -> None:
    acme = Brand(
        "Acme",
        ("Acme",),
        query="NOT brick",
        products=(
            Product("Rocket Skates", ("Rocket Skates",)),
            Product("Jet", (), query='"jet pack" NEAR/3 acme'),
        ),
    )
    matcher = Matcher.from_brands([acme])
    assert [(m.brand, m.product) for m in matcher.match("Rocket Skates rule")] == [
        ("Acme", "Rocket Skates")
    ]
    assert matcher.match("Rocket Skates on a brick wall") == []
    [m] = matcher.match("the jet pack from acme")
    assert (m.brand, m.product) == ("Acme", "Jet")
    assert matcher.match("the jet pack from a shop") == []


def test_exclusions_apply_to_query_words_too() -> None:
    brand = Brand("Acme", (), exclude=("Acme Brick",), query="acme")
    assert brands("Acme Brick ships", brand) == []
    assert brands("Acme Brick is not Acme", brand) == ["Acme"]


def test_brands_without_queries_are_unchanged_beside_brands_with_them() -> None:
    matcher = Matcher.from_brands([Brand("Acme", ("Acme",)), LINEAR])
    assert [m.brand for m in matcher.match("Acme and Linear")] == ["Acme", "Linear"]
    assert [m.brand for m in matcher.match("Acme and linear algebra")] == ["Acme"]


# --- text inside links -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Deal https://shop.example/item?partner=globex today", []),
        ("Deal www.shop.example/globex/item today", []),
        ("Deal shop.example/globex today", []),
        ("Globex deal https://shop.example/?partner=globex", ["Globex"]),
        ("See https://globex.com/pricing", ["globex.com"]),  # a domain term still counts
        ("mail bob@globex.com", ["globex.com"]),
    ],
)
def test_text_inside_a_link_does_not_name_a_brand(text: str, expected: list[str]) -> None:
    matcher = Matcher.from_brands([Brand("Globex", ("Globex", "globex.com"))])
    assert [t for m in matcher.match(text) for t in m.terms] == expected


def test_query_words_inside_a_link_do_not_count_either() -> None:
    assert brands("Read https://blog.example/linear-is-great", LINEAR) == []


# --- why -----------------------------------------------------------------------------------------


def test_explain_says_what_held_and_what_dropped() -> None:
    matcher = Matcher.from_brands(
        [LINEAR, Brand("Acme", ("Acme",), exclude=("Acme Brick",)), Brand("Globex", ("Globex",))]
    )
    kept = matcher.explain("We plan sprints in Linear")
    [(m, why)] = kept.mentions
    assert m.brand == "Linear" and '"Linear" found' in why and kept.why_not == []

    dropped = matcher.explain("Linear algebra, Acme Brick, https://x.example/?ref=globex")
    assert dropped.mentions == []
    reasons = {d["brand"]: d["why"] for d in dropped.why_not}
    assert "NOT" in reasons["Linear"] and "linear algebra" in reasons["Linear"]
    assert "Acme Brick" in reasons["Acme"]
    assert "inside a link" in reasons["Globex"]


# --- config and check -----------------------------------------------------------------------------


def write(tmp_path: Path, brands_yaml: str) -> Path:
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(
        "database: m.db\nbrands:\n"
        + textwrap.indent(textwrap.dedent(brands_yaml), "  ")
        + "sources: []\n"
    )
    return cfg


def test_a_query_that_does_not_parse_is_a_config_error_with_line_and_column(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        """\
        - name: Acme
          terms: [Acme]
        - name: Linear
          query: '(Linear OR linear.app) AND NOT'
        """,
    )
    result = CliRunner().invoke(cli, ["-c", str(cfg), "check"])
    assert result.exit_code == 2
    assert (
        "sources.yaml:6: brands[1].query: column 31: expected a word, a phrase or '(' after NOT, "
        "found the end of the query"
    ) in result.output


def test_check_shows_each_brands_rule_in_words(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        """\
        - name: Acme
          terms: [Acme]
          exclude: [Acme Brick]
          products:
            - name: Jet
              query: '"jet pack" NEAR/3 acme'
        - name: Linear
          query: '(Linear OR linear.app) AND NOT "linear algebra"'
        """,
    )
    result = CliRunner().invoke(cli, ["-c", str(cfg), "check"])
    assert result.exit_code == 0, result.output
    assert 'Acme: a mention when it names "Acme" (any case); not where inside "Acme Brick"' in (
        result.output
    )
    assert 'product Jet when "jet pack" within 3 words of "acme"' in result.output
    assert 'Linear: a mention when ("Linear" or "linear.app"), and not "linear algebra"' in (
        result.output
    )


def test_a_query_alone_does_not_make_the_name_a_term(tmp_path: Path) -> None:
    from listener.config import load_config

    cfg = write(tmp_path, "- name: Linear\n  query: 'Linear AND app'\n")
    [brand] = load_config(cfg).brands
    assert brand.terms == () and brand.query == "Linear AND app"


def test_why_not_names_the_exclusion_that_dropped_a_query_word() -> None:
    brand = Brand("Linear", (), exclude=("linear algebra",), query="Linear NEAR/5 sprint*")
    explained = Matcher.from_brands([brand]).explain("Linear algebra homework again")
    assert explained.mentions == []
    assert explained.why_not == [
        {
            "brand": "Linear",
            "terms": ["Linear"],
            "why": "inside the excluded phrase 'linear algebra'",
        }
    ]
