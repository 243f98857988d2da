"""Sentiment as a user of listener sees it: labels, explanations, overrides, `listener score`."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from vaderSentiment import vaderSentiment as vader

from listener.models import Score
from listener.sentiment import (
    Scorer,
    SentimentConfig,
    describe_explanation,
    load_domain_lexicon,
    parse_lexicon,
    score_json_lines,
    score_record,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sentiment"


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer()


def driving(explanation: tuple[dict, ...]) -> list[str]:
    """The words and phrases an explanation names, most important first."""
    return [e.get("word") or e["phrase"] for e in explanation if "rule" not in e]


# --- the examples ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "support never answered and the app keeps crashing",
        "Outage again. Three hours down, and I requested a refund.",
    ],
)
def test_complaints_plain_vader_misses_come_out_negative(scorer: Scorer, text: str) -> None:
    assert vader.SentimentIntensityAnalyzer().polarity_scores(text)["compound"] > -0.05
    assert scorer.score(text).label == "negative"


def test_no_problems_is_praise_not_a_complaint(scorer: Scorer) -> None:
    score = scorer.score("No problems at all with Acme", neutralise=["Acme"])
    assert score.label == "positive"


@pytest.mark.parametrize(
    "text",
    [
        "No crashes since the update.",
        "I have never had an outage with them.",
        "Two years in and not a single hiccup.",
        "Zero downtime this quarter.",
        "It didn’t crash once on the trip.",  # curly apostrophe, as phones type it
        "Not bad at all.",
    ],
)
def test_negated_complaints_are_not_negative(scorer: Scorer, text: str) -> None:
    assert scorer.score(text).label != "negative"


@pytest.mark.parametrize(
    "text",
    [
        "The app crashed twice today.",
        "It keeps crashing on launch.",
        "Constant crashes since 4.2.",
        "On hold for 45 minutes, then the call dropped.",
        "They raised the price again without any notice.",
        "Cancelled my subscription and switched to a competitor.",
        "Still waiting on my refund, three weeks later.",
        "The firmware update bricked my router.",
        "I'm sick of the lag.",
    ],
)
def test_customer_complaints_are_negative(scorer: Scorer, text: str) -> None:
    assert scorer.score(text).label == "negative"


@pytest.mark.parametrize(
    "text",
    [
        "Support sorted it out in minutes, rock solid ever since.",
        "The new release absolutely kills it.",
        "Can't recommend them enough.",
        "Setup was painless and it just works.",
        "New dashboard is 🔥",
    ],
)
def test_customer_praise_is_positive(scorer: Scorer, text: str) -> None:
    assert scorer.score(text).label == "positive"


def test_context_words_vader_misreads_are_neutral_in_customer_talk(scorer: Scorer) -> None:
    # VADER: support +1.7, free +2.3 ("free tier" is a product, not a feeling)
    assert scorer.score("Does the free tier include support for SSO?").label == "neutral"


def test_questions_about_a_topic_are_not_complaints(scorer: Scorer) -> None:
    score = scorer.score("How do I report an outage?")
    assert score.label == "neutral"
    assert {"rule": "question", "not_scored": ["outage"]} in score.explanation
    assert scorer.score("Which plan has better support for teams?").label == "neutral"
    # a question that reports the problem is still a complaint
    assert scorer.score("Why does the app keep crashing?").label == "negative"
    assert scorer.score("Anyone else seeing an outage?").label == "negative"


# --- brand and product names -------------------------------------------------------------------


def test_brand_named_vandelay_pay_alone_is_neutral() -> None:
    plain = Scorer(SentimentConfig(domain_lexicon=False))  # VADER alone: "pay" is -0.4
    assert plain.score("Vandelay Pay").label == "negative"
    score = plain.score("Vandelay Pay", neutralise=["Vandelay Pay"])
    assert (score.label, score.compound) == ("neutral", 0.0)
    assert {"rule": "neutralised", "term": "Vandelay Pay"} in score.explanation


def test_brand_name_is_masked_case_insensitively_at_word_boundaries(scorer: Scorer) -> None:
    assert scorer.score("Best Buy").label == "positive"  # VADER: best +3.2
    assert scorer.score("BEST BUY opened a store", neutralise=["Best Buy"]).label == "neutral"
    # "Best Buyers" is not the brand: the word "best" still counts
    assert scorer.score("Best Buyers club", neutralise=["Best Buy"]).label == "positive"


def test_masking_the_brand_keeps_the_sentiment_about_it(scorer: Scorer) -> None:
    score = scorer.score("Happy with Best Buy, great service", neutralise=["Best Buy"])
    assert score.label == "positive"
    names = driving(score.explanation)
    assert "happy" in names and "best" not in names


# --- user overrides ----------------------------------------------------------------------------


def test_user_word_override_changes_the_label(scorer: Scorer) -> None:
    text = "The migration was glacial."
    assert scorer.score(text).label == "neutral"
    custom = Scorer(SentimentConfig(lexicon={"Glacial": -2.5}))
    score = custom.score(text)
    assert score.label == "negative"
    assert score.explanation[0] == {"word": "glacial", "valence": -2.5, "source": "user"}


def test_user_can_make_a_word_neutral(scorer: Scorer) -> None:
    assert scorer.score("Great Clips opened downtown").label == "positive"
    custom = Scorer(SentimentConfig(lexicon={"great": 0}))
    assert custom.score("Great Clips opened downtown").label == "neutral"


def test_user_phrase_override_changes_the_label_and_beats_ours(scorer: Scorer) -> None:
    custom = Scorer(SentimentConfig(phrases={"went dark": -2.5, "never again": 0}))
    text = "The dashboard went dark during checkout"
    assert scorer.score(text).label == "neutral"
    score = custom.score(text)
    assert score.label == "negative"
    assert score.explanation[0] == {"phrase": "went dark", "valence": -2.5, "source": "user"}
    assert scorer.score("Never again.").label == "negative"
    assert custom.score("Never again.").label == "neutral"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lexicon": {"on hold": -2}}, "put it under sentiment.phrases"),
        ({"phrases": {"meh": -1}}, "put it under sentiment.lexicon"),
        ({"lexicon": {"laggy": -5}}, "sentiment.lexicon['laggy']: valence must be"),
        ({"lexicon": {"laggy": True}}, "valence must be a number"),
        ({"lexicon": {"crash!": -2}}, "use 'crash'"),
        ({"negative_threshold": 0.2, "positive_threshold": 0.1}, "must be below"),
        ({"positive_threshold": 2}, "from -1 to 1"),
    ],
)
def test_bad_overrides_are_rejected_with_the_key_and_the_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        SentimentConfig(**kwargs)


def test_thresholds_decide_the_label(scorer: Scorer) -> None:
    text = "The app is fine."
    assert 0.05 < scorer.score(text).compound < 0.5
    assert scorer.score(text).label == "positive"
    strict = Scorer(SentimentConfig(positive_threshold=0.5, negative_threshold=-0.5))
    assert strict.score(text).label == "neutral"
    assert [strict.label_for(c) for c in (0.5, 0.49, -0.49, -0.5)] == [
        "positive",
        "neutral",
        "neutral",
        "negative",
    ]
    assert [scorer.label_for(c) for c in (0.05, 0.0, -0.05)] == ["positive", "neutral", "negative"]


def test_empty_text_is_neutral(scorer: Scorer) -> None:
    score = scorer.score("   ")
    assert (score.label, score.compound, score.explanation) == ("neutral", 0.0, ())


def test_lexicon_version_changes_with_what_changes_the_scores() -> None:
    base = Scorer().lexicon_version
    assert base == Scorer(SentimentConfig()).lexicon_version
    others = {
        Scorer(SentimentConfig(lexicon={"glacial": -2})).lexicon_version,
        Scorer(SentimentConfig(phrases={"went dark": -2})).lexicon_version,
        Scorer(SentimentConfig(positive_threshold=0.1)).lexicon_version,
        Scorer(SentimentConfig(domain_lexicon=False)).lexicon_version,
    }
    assert base not in others and len(others) == 4
    assert len(base) == 12 and int(base, 16) >= 0


# --- explanations ------------------------------------------------------------------------------


def test_explanation_names_the_words_and_phrases_that_drove_the_score(scorer: Scorer) -> None:
    score = scorer.score("support never answered and the app keeps crashing")
    names = driving(score.explanation)
    assert "never answered" in names and "keeps crashing" in names
    assert all(e["source"] == "domain" for e in score.explanation)
    assert "support" not in names  # VADER's +1.7 for "support" is gone


def test_explanation_shows_negation(scorer: Scorer) -> None:
    score = scorer.score("The new version is not bad")
    assert score.label == "positive"
    assert {"rule": "negation", "word": "not", "applies_to": "bad"} in score.explanation


def test_explanation_is_what_vader_summed(scorer: Scorer) -> None:
    """The valences shown add up to the compound: the explanation is the score, not a story."""
    for text in (
        "Great app but the sync is slow and support is a joke!",
        "No outages since March. Pretty impressed with the team.",
        "Three weeks waiting for a refund.",
    ):
        score = scorer.score(text)
        assert len(score.explanation) <= 8
        total = sum(e["valence"] for e in score.explanation if "valence" in e)
        total += sum(e["added"] for e in score.explanation if e.get("rule") == "punctuation")
        assert vader.normalize(total) == pytest.approx(score.compound, abs=0.005)


def test_explanation_is_capped_and_most_important_first(scorer: Scorer) -> None:
    text = " ".join(["good bad awful nice terrible great slow fast"] * 3)
    explanation = scorer.score(text).explanation
    assert len(explanation) == 8
    valences = [abs(e["valence"]) for e in explanation if "valence" in e]
    assert valences == sorted(valences, reverse=True)


def test_describe_explanation_is_one_readable_line(scorer: Scorer) -> None:
    line = describe_explanation(
        scorer.score("Support never answered. Not bad app though").explanation
    )
    assert '"never answered" -2.2' in line and '"not" negates bad' in line


def test_an_intents_words_that_also_scored_are_said_once(scorer: Scorer) -> None:
    # An alert's "why" once read 'churn: "leaving <brand>", "leaving <brand>" -2.0'.
    line = describe_explanation(
        scorer.score("We are leaving Acme next month.", neutralise=["Acme"]).explanation
    )
    assert line == 'churn: "leaving <brand>" -2.0'


# --- `listener score` --------------------------------------------------------------------------


def test_score_json_lines_scores_good_lines_and_reports_bad_ones(scorer: Scorer) -> None:
    terms = {"Acme": ("Acme", "Acme Corp"), "Vandelay Pay": ("Vandelay Pay",)}

    def neutralise_for(brand: str | None) -> tuple[str, ...]:
        if brand is not None and brand not in terms:
            raise KeyError("not in sources.yaml")
        return terms.get(brand or "", ())

    lines = [
        '{"text": "Acme support never answered", "brand": "Acme"}\n',
        "not json\n",
        '{"text": 5}\n',
        "\n",
        '["a list"]\n',
        '{"id": 7, "text": "Vandelay Pay", "brand": "Vandelay Pay"}\n',
        '{"text": "Love it"}\n',
        '{"text": "Love it", "brand": "Initech"}\n',
    ]
    out = list(score_json_lines(scorer, lines, neutralise_for))
    json.dumps(out)  # every record is plain JSON
    assert [o.get("line") for o in out] == [None, 2, 3, 5, None, None, 8]
    first = out[0]
    assert set(first) == {
        *("text", "brand", "lang", "label", "intents", "compound", "pos", "neu", "neg"),
        "explanation",
    }
    assert first["intents"] == ["complaint"]
    assert (first["brand"], first["label"]) == ("Acme", "negative")
    assert first["explanation"][0]["phrase"] == "never answered"
    assert "not JSON" in out[1]["error"] and '"text"' in out[2]["error"]
    assert (out[4]["id"], out[4]["label"], out[4]["compound"]) == (7, "neutral", 0.0)
    assert out[5]["brand"] is None and out[5]["label"] == "positive"
    assert "Initech" in out[6]["error"]


def test_score_record_for_text_given_as_arguments(scorer: Scorer) -> None:
    record = score_record(scorer, "Acme is down again", "Acme", neutralise=["Acme"])
    assert record["label"] == "negative" and record["text"] == "Acme is down again"
    score = scorer.score("Acme is down again", neutralise=["Acme"])
    assert record["explanation"] == list(score.explanation)
    assert record["compound"] == score.compound


# --- the shipped lexicon -----------------------------------------------------------------------


def test_shipped_lexicon_loads_with_word_forms_and_phrases() -> None:
    lexicon = load_domain_lexicon()
    assert {"crash", "crashes", "crashed", "crashing"} <= set(lexicon.words)
    assert lexicon.words["lagged"] == lexicon.words["lag"] < 0
    assert lexicon.words["support"] == 0
    assert len(lexicon.phrases) > 1000 and "never answered" in lexicon.phrases


def test_lexicon_format_errors_name_the_line() -> None:
    with pytest.raises(ValueError, match=r"x\.tsv:2: 'outage' already has valence -2"):
        parse_lexicon("outage\t-2\noutage\t-1\n", "x.tsv")
    with pytest.raises(ValueError, match=r"x\.tsv:1: valence 'bad' is not a number"):
        parse_lexicon("outage\tbad\n", "x.tsv")
    words, phrases = parse_lexicon("@W\t{a|b}\n{x|y} @W\t-1\nfix\t1\tv\n", "x.tsv")
    assert phrases == {"x a": -1, "x b": -1, "y a": -1, "y b": -1}
    assert words == {"fix": 1, "fixes": 1, "fixed": 1, "fixing": 1}


# --- the product's promises, measured on shared data ---------------------------------------------

needs_data = pytest.mark.skipif(
    not (DATA / "customer_voice_dev.jsonl").is_file(), reason=f"no sentiment data in {DATA}"
)


def _rated(name: str) -> list[tuple[float, str]]:
    rows = []
    with (DATA / name).open(encoding="utf-8-sig", newline="") as f:
        for line in f:
            if line.strip():
                _id, mean, text = line.rstrip("\r\n").split("\t", 2)
                rows.append((float(mean), text))
    return rows


@needs_data
def test_customer_voice_accuracy_and_negative_recall(scorer: Scorer) -> None:
    rows = [json.loads(line) for line in (DATA / "customer_voice_dev.jsonl").open()]
    labels = [
        scorer.score(r["text"], neutralise=[r["brand"]] if r.get("brand") else []).label
        for r in rows
    ]
    accuracy = statistics.fmean(p == r["label"] for p, r in zip(labels, rows, strict=True))
    negatives = [p for p, r in zip(labels, rows, strict=True) if r["label"] == "negative"]
    assert accuracy >= 0.85
    assert negatives.count("negative") / len(negatives) >= 0.85


@needs_data
@pytest.mark.parametrize("name", ["tweets_GroundTruth.txt", "amazonReviewSnippets_GroundTruth.txt"])
def test_general_text_correlates_no_worse_than_plain_vader(scorer: Scorer, name: str) -> None:
    rows = _rated(name)
    human = [m for m, _ in rows]
    plain = vader.SentimentIntensityAnalyzer()
    r_plain = statistics.correlation(human, [plain.polarity_scores(t)["compound"] for _, t in rows])
    r_ours = statistics.correlation(human, [scorer.score(t).compound for _, t in rows])
    assert r_ours >= r_plain - 0.01


# --- sentiment that holds on posts it was not tuned on (issue 12) -------------------------------


def brand(scorer: Scorer, text: str) -> Score:
    return scorer.score(text, neutralise=["Acme"])


@pytest.mark.parametrize(
    "text",
    [
        "Thanks, Acme, for the 4x price increase. Really motivating.",
        "Shoutout to Acme for the 3-day outage 🙃",
        "Oh great, Acme logged me out mid-sentence again.",
        "Love how Acme deleted my notes after the update. Truly the future 🙄",
        # a few words of praise straight after a plain complaint
        "Acme's app crashes every time I open the camera. Truly helpful.",
        # praise opening a sentence about a bad event stated as a fact
        "Fantastic, Acme still hasn't sent the replacement charger.",
    ],
)
def test_irony_toward_the_brand_is_negative(scorer: Scorer, text: str) -> None:
    score = brand(scorer, text)
    assert score.label == "negative", score.explanation
    assert any(e.get("rule") == "irony" for e in score.explanation)


@pytest.mark.parametrize(
    ("text", "fact"),
    [
        ("Acme bill went from $65 to $79. Same plan, same speed.", "price"),
        ("Acme Rocket Pro per seat went $12 → $15 → $19 in 24 months.", "price"),
        ("Acme removed offline downloads in today's update.", "taken away"),
        ("Acme now charges $4 a month for search.", "worse now"),
        ("Acme took 9 days to reply to my ticket.", "waiting"),
        ("★☆☆☆☆ Acme Anvil after a month", "rating"),
    ],
)
def test_bad_facts_without_a_feeling_word_are_negative(
    scorer: Scorer, text: str, fact: str
) -> None:
    score = brand(scorer, text)
    assert score.label == "negative"
    assert any(e.get("rule") == "fact" and e["words"].startswith(fact) for e in score.explanation)


@pytest.mark.parametrize(
    "text",
    [
        "Acme's router crashed twice this week. Still love it though.",  # a contrast
        "Acme's router failed on Sunday. Impressed.",  # the author's own feeling
        "Acme sent an engineer round when our boiler broke. Brilliant.",  # a circumstance
    ],
)
def test_praise_after_a_problem_that_is_meant_is_not_irony(scorer: Scorer, text: str) -> None:
    assert not any(e.get("rule") == "irony" for e in brand(scorer, text).explanation)


@pytest.mark.parametrize(
    ("text", "fact"),
    [
        ("Acme's sync overwrote all of the drafts on my tablet.", "lost or destroyed"),
        ("Acme still hasn't sent the replacement charger.", "still not"),
        ("Acme shrank the lunch portions this spring.", "cut back"),
        ("Acme tacked on a $2 paper statement charge.", "added a charge"),
        ("Acme moved our renewal date with two days notice.", "without notice"),
        ("Acme promised the invoices would be corrected by Friday. That was in 2023.", "promise"),
        ("Acme keeps forgetting my delivery address.", "again"),
        ("Why did Acme erase my playlists?", "lost or destroyed"),
    ],
)
def test_bad_events_stated_plainly_are_negative(scorer: Scorer, text: str, fact: str) -> None:
    score = brand(scorer, text)
    assert score.label == "negative", score.explanation
    assert any(e.get("rule") == "fact" and e["words"].startswith(fact) for e in score.explanation)


@pytest.mark.parametrize(
    "text",
    [
        "Acme has never lost a single photo of mine in six years.",  # negated: an absence
        "Acme cut the delivery fee for members.",  # cutting a fee is good news
        "I deleted my old Acme projects to tidy up.",  # the author did it
    ],
)
def test_bad_event_words_that_are_not_bad_events_are_not_negative(
    scorer: Scorer, text: str
) -> None:
    score = brand(scorer, text)
    assert not any(
        e.get("rule") == "fact" and e["words"].startswith(("lost", "cut", "added"))
        for e in score.explanation
    ), score.explanation


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Acme's new runners took our test suite from 18 minutes to 5.", "positive"),
        ("Acme refunds went from 3 days to 3 weeks this year.", "negative"),
        ("Acme's earbud battery went from 9 hours to 4 after the update.", "negative"),
    ],
)
def test_a_time_that_changed_length_is_good_or_bad_news(
    scorer: Scorer, text: str, label: str
) -> None:
    score = brand(scorer, text)
    assert score.label == label, score.explanation
    assert any(e.get("rule") == "fact" and e["words"].startswith("time") for e in score.explanation)


def test_a_price_cut_and_five_stars_are_positive(scorer: Scorer) -> None:
    assert (
        brand(scorer, "Acme cut prices: our plan went from $15 to $9 per seat.").label == "positive"
    )
    assert brand(scorer, "★★★★★ Acme, two years in").label == "positive"


@pytest.mark.parametrize(
    "text",
    [
        "How do I kill all orphaned Acme volumes at once?",
        "Panic question: I accidentally deleted an Acme bucket. Is there a recycle bin?",
        "Would it be possible to add a dark theme to Acme? Thanks for considering!",
        "Feature request: Acme breakout rooms via the API. Happy to share our use case. Thanks!",
    ],
)
def test_questions_and_requests_without_a_stance_are_neutral(scorer: Scorer, text: str) -> None:
    assert brand(scorer, text).label == "neutral"


def test_a_problem_solved_is_told_as_praise(scorer: Scorer) -> None:
    text = "Acme fixed the report export bug I reported, and emailed me about it."
    assert brand(scorer, text).label == "positive"


def test_opening_remarks_about_the_article_are_not_about_the_brand(scorer: Scorer) -> None:
    text = "Great article, thanks! Acme support took 6 days to answer and the app still crashes."
    assert brand(scorer, text).label == "negative"


@pytest.mark.parametrize(
    "text",
    [
        "Cancelling Acme today. The sync broke again and support never answered.",
        "Switched our whole team to Acme last month, best decision this year!",
        "Is Acme down? Thanks for the 3-day outage, great job.",
        'Acme\'s new "simplified" pricing: the plan went from $10 to $25.',
    ],
)
def test_an_item_and_its_one_mention_read_once_score_as_read_twice(
    scorer: Scorer, text: str
) -> None:
    # A post naming one brand from its start is read once for its two scores (the mention's,
    # toward the brand, and the item's as a whole): the same as reading it twice.
    toward, whole = scorer.score_both(text, neutralise=["Acme"])
    assert toward == scorer.score(text, neutralise=["Acme"])
    assert whole == scorer.score(text, neutralise=["Acme"], toward=False)
    if "Cancelling" in text:
        assert "churn" in toward.intents and "churn" not in whole.intents
