"""Each mention's language: given by the source or detected; `lang:` filters on it; sentiment and
intent are claimed only in English, the rest stored `unscored` (never a negative alert)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner
from helpers import Clock, poll_once, rows, rss, write_config

from listener.analyse import score_matches
from listener.cli import cli
from listener.lang import detect
from listener.match import Matcher
from listener.models import Brand, Item
from listener.sentiment import Scorer

FIXTURE = Path(__file__).parent / "fixtures" / "lang_posts.jsonl"


def test_short_posts_in_seven_languages_are_detected() -> None:
    posts = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    got = [detect(p["text"]) for p in posts]
    right = sum(g == p["lang"] for g, p in zip(got, posts, strict=True))
    assert len({p["lang"] for p in posts}) == 7
    assert right / len(posts) >= 0.95
    # What decides scoring never errs here: English is English, the rest is not.
    assert [g == "en" for g in got] == [p["lang"] == "en" for p in posts]
    # English that the model puts second, close behind another language, is English.
    assert detect("Pitch vs Canva for presentations: Pitch wins on collaboration.") == "en"


def test_long_posts_with_english_words_in_them_keep_their_language(monkeypatch) -> None:
    # Brand names, product names and quoted English ("the best", "for you") do not make a post
    # English; a plainly English post is told without the model.
    posts = {
        "de": "Wir haben Acme Cloud for Teams seit zwei Jahren, aber die neue Version ist "
        "leider viel langsamer und der Support antwortet nicht. Das ist wirklich enttäuschend, "
        "wir suchen jetzt eine Alternative für unser Team.",
        "nl": "We hebben de app van Acme getest en het is goed, maar de prijs is te hoog voor "
        "een klein bedrijf. Wat doen jullie met de data en waar staat de server precies?",
        "fr": 'J\'ai testé Acme "The Best Of Cloud" pendant un mois : la synchronisation est '
        "lente, le support ne répond pas et le prix a encore augmenté cette année.",
        "es": "Llevo un año con Acme y el servicio es un desastre: la app se cierra sola, "
        'nadie contesta en soporte y ahora quieren cobrar más por el plan "for you".',
    }
    posts["it"] = (
        "Uso Acme da tre anni e devo dire che il servizio clienti è peggiorato molto: nessuno "
        'risponde alle email, l\'app si blocca spesso e il nuovo piano "Pro for Teams" costa il '
        "doppio. Sto pensando di passare a un altro fornitore."
    )
    posts["pt"] = (
        "Comprei o Acme Hub no mês passado e as atualizações quebraram tudo: a sincronização "
        "não funciona, o suporte não responde e as faturas vieram com valores errados. Alguém "
        "sabe se existe uma alternativa melhor?"
    )
    for lang, text in posts.items():
        assert detect(text) == lang, text
    english = (
        "We moved our whole team to Acme last spring and it has been the best decision of the "
        "year: the sync is fast, the support people answer within the hour and our data is safe."
    )

    def no_model() -> None:
        raise AssertionError("the model was asked about plain English")

    monkeypatch.setattr("listener.lang._identifier", no_model)
    assert detect(english) == "en"


def test_too_short_to_tell_is_unknown_and_scored_as_before() -> None:
    assert detect("Acme down??") is None
    assert detect("https://acme.example/x @acme #acme ok") is None
    scorer = Scorer()
    matcher = Matcher.from_brands([Brand("Acme", ("Acme",))])
    item = Item("s", None, "u", "", "Acme sucks!!")
    analysis = score_matches(item, matcher.match_item(item), matcher, scorer, in_brand_thread=False)
    assert analysis.lang is None
    assert analysis.mentions[0].score.label == "negative"


def test_the_source_language_wins_over_detection() -> None:
    scorer = Scorer()
    matcher = Matcher.from_brands([Brand("Acme", ("Acme",))])
    text = "Acme is awful, the worst support I have ever had, cancelling today"
    english = Item("s", None, "u", "", text)
    tagged = Item("s", None, "u", "", text, extra={"language": "de"})
    assert (
        score_matches(
            english, matcher.match_item(english), matcher, scorer, in_brand_thread=False
        ).lang
        == "en"
    )
    analysis = score_matches(
        tagged, matcher.match_item(tagged), matcher, scorer, in_brand_thread=False
    )
    assert analysis.lang == "de"
    [mention] = analysis.mentions
    assert (mention.score.label, mention.score.compound, mention.score.intents) == (
        "unscored",
        0.0,
        (),
    )
    assert analysis.item_score is not None and analysis.item_score.label == "unscored"


def test_lang_query_uses_the_detected_language(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, [], brands="- name: Acme\n  query: 'Acme AND lang:fr'\n")
    lines = [
        {"text": "Le support d'Acme ne répond jamais à mes messages"},
        {"text": "Acme support never answers my messages at all"},
        {"text": "Acme support never answers my messages at all", "lang": "fr-CA"},
    ]
    result = CliRunner().invoke(
        cli, ["-c", str(cfg), "match"], input="\n".join(json.dumps(x) for x in lines)
    )
    out = [json.loads(line) for line in result.output.splitlines()]
    assert [[m["brand"] for m in o["mentions"]] for o in out] == [["Acme"], [], ["Acme"]]


def test_listener_score_does_not_claim_a_label_in_french() -> None:
    result = CliRunner().invoke(
        cli, ["score", "Acme est nul, horrible, une arnaque totale, je déteste"]
    )
    out = json.loads(result.output)
    assert (out["lang"], out["label"], out["intents"]) == ("fr", "unscored", [])
    result = CliRunner().invoke(cli, ["score", "Acme is terrible, a total scam, I hate it"])
    assert json.loads(result.output)["label"] == "negative"


RULES = """\
alerts:
  channels: []
  rules:
    negative_thread:
      min_negative: 1
      min_posts: 50
      window: 1d
"""


def test_a_polled_french_complaint_is_stored_unscored_and_never_alerts(tmp_path, httpd) -> None:
    posts = [
        (
            "fr",
            "Acme est nul",
            "Acme est nul, horrible, une arnaque totale. Je déteste ce service.",
        ),
        ("en", "Acme is awful", "Acme is awful, a total scam. I hate this terrible service."),
    ]
    httpd.add(
        "/feed",
        rss(
            [
                {"title": t, "link": f"https://blog.example.com/{g}", "guid": g, "body": b}
                for g, t, b in posts
            ]
        ),
    )
    cfg = write_config(tmp_path, [("blog", httpd.url("/feed"))], extra=RULES)
    poll_once(cfg, now=Clock(datetime.now(UTC)))
    stored = rows(
        tmp_path,
        "SELECT m.url, m.lang, m.label, m.compound, m.intents, i.lang, i.label FROM mentions m "
        "JOIN items i ON i.id = m.item_id ORDER BY m.url",
    )
    assert stored == [
        (
            "https://blog.example.com/en",
            "en",
            "negative",
            stored[0][3],
            stored[0][4],
            "en",
            "negative",
        ),
        ("https://blog.example.com/fr", "fr", "unscored", 0.0, "[]", "fr", "unscored"),
    ]
    assert stored[0][3] < -0.5
    alerted = rows(tmp_path, "SELECT url FROM alerts WHERE rule = 'negative_thread'")
    assert alerted == [("https://blog.example.com/en",)]
    result = CliRunner().invoke(cli, ["-c", str(cfg), "stats"])
    assert "negative  unscored" in result.output
    [acme] = [
        line.split() for line in result.output.splitlines() if line.strip().startswith("Acme")
    ]
    assert acme == ["Acme", "2", "0", "0", "1", "1"]


def test_rescore_applies_the_language_gate_to_mentions_scored_before_it(tmp_path, httpd) -> None:
    body = "Acme est nul, horrible, une arnaque totale. Je déteste ce service."
    httpd.add(
        "/feed",
        rss([{"title": "Acme", "link": "https://blog.example.com/fr", "guid": "fr", "body": body}]),
    )
    cfg = write_config(tmp_path, [("blog", httpd.url("/feed"))])
    poll_once(cfg, now=Clock(datetime.now(UTC)))
    # As a database polled before languages were told apart: scored in English, no language.
    conn = sqlite3.connect(tmp_path / "mentions.db")
    with conn:
        conn.execute("UPDATE mentions SET label = 'negative', auto_label = 'negative', lang = NULL")
        conn.execute("UPDATE items SET label = 'negative', lang = NULL")
    conn.close()
    result = CliRunner().invoke(cli, ["-c", str(cfg), "rescore", "--all"])
    assert result.exit_code == 0, result.output
    assert rows(tmp_path, "SELECT label, lang FROM mentions") == [("unscored", "fr")]
    assert rows(tmp_path, "SELECT label, lang FROM items") == [("unscored", "fr")]
