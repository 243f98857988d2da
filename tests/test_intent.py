"""What customers mean toward a brand: intents per mention, target-dependent, stored and alerted."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from helpers import BASE_TIME, db_count, rss, wait_for, write_config
from httpd import RequestInfo

from listener.alerts.outbox import Backoff, build_channels, deliver_pending
from listener.cli import cli
from listener.config import ConfigError, load_config
from listener.pipeline import poll_sources
from listener.runtime import open_runtime
from listener.sentiment import Scorer
from listener.store import Store

ROOT = Path(__file__).resolve().parents[1]
FRESH = ROOT / "tests" / "fixtures" / "sentiment" / "fresh_posts.jsonl"
SHARED = ROOT.parent / "shared" / "data" / "sentiment" / "customer_voice_intents.jsonl"


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer()


def toward(scorer: Scorer, text: str, brand: str, *others: str):
    return scorer.score(text, neutralise=[brand], others=list(others))


# --- toward which brand -------------------------------------------------------------------------


def test_moving_from_one_brand_to_another_is_churn_for_one_praise_for_the_other(scorer) -> None:
    text = "We're moving our team from Hooli Chat to Globex next month."
    hooli = toward(scorer, text, "Hooli", "Globex")
    globex = toward(scorer, text, "Globex", "Hooli")
    assert hooli.intents[0] == "churn" and hooli.label == "negative"
    assert "churn" not in globex.intents and "praise" in globex.intents
    assert globex.label == "positive"


def test_two_brand_post_scores_each_brand_on_what_is_said_about_it(scorer) -> None:
    text = (
        "Zanderfly had zero bars for 40 miles and dropped every call, "
        "but Hooli Maps offline mode got us to the campsite without a hitch. Brilliant."
    )
    assert toward(scorer, text, "Zanderfly", "Hooli").label == "negative"
    assert toward(scorer, text, "Hooli", "Zanderfly").label == "positive"


def test_moving_to_another_brand_in_a_sentence_of_its_own_is_churn_for_this_one(scorer) -> None:
    # The sentence that says where the author goes names only the other brand: for the brand
    # the post is about, that move is leaving; what it says of the other brand stays the other's.
    text = (
        "Hooli Mail has the worst support I have ever dealt with. "
        "I am done, switching to Globex, which is wonderful and fast."
    )
    hooli = toward(scorer, text, "Hooli", "Globex")
    assert hooli.intents[0] == "churn" and hooli.label == "negative"
    assert "switching to" in str(hooli.explanation)
    globex = toward(scorer, text, "Globex", "Hooli")
    assert "churn" not in globex.intents and globex.label == "positive"
    # Another brand's own news is not the author leaving.
    news = toward(
        scorer, "Hooli Mail is great. Globex is switching to a new logo.", "Hooli", "Globex"
    )
    assert "churn" not in news.intents and news.label == "positive"


def test_switching_to_a_name_the_config_does_not_know_is_churn(scorer) -> None:
    score = scorer.score("We're switching to Inkwell next month.")
    assert score.intents == ("churn",) and score.label == "negative"


# --- the intents -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Cancelling our 40 Acme seats this morning.",
        "Migrating everything off Acme before the renewal.",
        "We're not renewing our Acme contract in March.",
        "Any good alternatives to Acme? ~15 people, need screen share.",
        "Done with Acme. Porting my number out tomorrow.",
        "Acme has one week to fix billing or I'll take the refund and go.",
        "The Acme app lost my notes twice, so I've gone back to paper.",
    ],
)
def test_leaving_in_its_many_forms_is_churn(scorer, text: str) -> None:
    score = toward(scorer, text, "Acme")
    assert score.intents[0] == "churn", score.explanation
    assert score.label == "negative"


@pytest.mark.parametrize(
    "text",
    [
        "I'm not switching away from Acme, whatever the forum says.",
        "What's the best way to cancel a duplicate charge in the Acme dashboard?",
        "The Acme export button moved to Settings in 4.2.",
        "Evaluating Acme alongside two other providers this week.",
    ],
)
def test_negated_or_unrelated_leaving_words_are_not_churn(scorer, text: str) -> None:
    assert "churn" not in toward(scorer, text, "Acme").intents


@pytest.mark.parametrize(
    "text",
    [
        "We told the Acme rep we won't be signing the renewal.",
        "Done flying Acme. Two lost bags in a year.",
        "Looking for a courier near Leeds that isn't Acme.",
        "Booked with a different airline this summer, Acme's delays put us off.",
        "Never buying Acme again.",
        "Acme won't see another cent from me.",
        "I'll be taking my business elsewhere, Acme.",
        "We gave Acme notice today.",
        "Acme, you've lost me.",
        "Trialling Globex to replace Acme across all 30 stores.",
        "Recommend me something other than Acme for payroll?",
        "Third outage this month. Time to find a new host.",
        "We're walking away from Acme after six years.",
        "Refund the deposit or I'm gone, Acme.",
        "If Acme doesn't fix the invoices by Friday, we're cancelling.",
        "This is our last month on Acme.",
        "Our department is replacing Acme next year.",
        "We are winding down our Acme seats.",
        "Uninstalled the app and deleted Acme. Shopping around now.",
    ],
)
def test_leaving_said_in_other_words_is_churn(scorer, text: str) -> None:
    score = toward(scorer, text, "Acme", "Globex")
    assert score.intents[0] == "churn", score.explanation


@pytest.mark.parametrize(
    "text",
    [
        "If I cancel my Acme plan in the trial window, do I get charged anything?",
        "What happens to my files if we close our Acme account mid-year?",
        "They replaced my Acme phone for free.",
        "Acme is out of stock everywhere.",
        "I'd never use anything but Acme.",
        "We need a new app for expenses, does Acme do that?",
        "I'm leaving a five star review for Acme.",
        "Dropped my Acme phone down the stairs. Not a scratch.",
        "My last order from Acme arrived a day late.",
        "How do I delete the Acme cache on a Mac?",
        "Acme is winding down its Berlin office.",
    ],
)
def test_supposing_and_praising_are_not_churn(scorer, text: str) -> None:
    # Guards on the churn rules' limits: each fails if its rule is loosened (no "?" check on
    # supposing, no subject on "replace", "is out", "anything but", a question, "leaving a").
    assert "churn" not in toward(scorer, text, "Acme", "Globex").intents


# Each kind of error the issue lists, in posts written for this test.
@pytest.mark.parametrize(
    ("text", "label"),
    [
        # praise told as the absence of something bad, past VADER's three words, or "zero"
        ("Two years on Acme and I've never had a single billing problem.", "positive"),
        ("Not a single unplanned outage on Acme since we moved in March.", "positive"),
        ("Zero failed deliveries from Acme this quarter.", "positive"),
        ("Setting up Acme on my dad's phone couldn't have been easier.", "positive"),
        # news about the brand is not a stance
        ("Acme launched an improved free tier for students on Monday.", "neutral"),
        ("Acme reported record quarterly profit, ahead of analyst estimates.", "neutral"),
        ("Acme 5.0 is out today with an improved search and a free tier.", "neutral"),
        # bad facts without a negative word
        ("Acme raised my premium by 30% at renewal.", "negative"),
        ("Acme closes its last branch in our town next month.", "negative"),
        ("Acme caps uploads at 10 Mbps on the basic plan.", "negative"),
        (
            "Acme promised the new card would arrive by Friday. That was three weeks ago.",
            "negative",
        ),
        # a claim in scare quotes; someone else's praise in quotes
        ('Acme\'s new "streamlined" checkout takes six screens now.', "negative"),
        ('Acme removed the offline mode. Their blog: "a better, simpler experience".', "negative"),
        # the asker's own circumstances around a how-to question
        (
            "How do I export every Acme invoice at once? The audit deadline is brutal and "
            "I'm terrified of missing one.",
            "neutral",
        ),
        # what a request asks for is described, not blamed
        ("It would be great if Acme let us restore a deleted folder from the trash.", "neutral"),
    ],
)
def test_sentiment_generalises_across_the_issues_error_kinds(scorer, text: str, label) -> None:
    assert toward(scorer, text, "Acme").label == label


def test_churn_without_blame_is_not_negative(scorer) -> None:
    score = toward(
        scorer, "Cancelled Acme today. Nothing wrong with it, I just don't need it.", "Acme"
    )
    assert score.intents[0] == "churn" and score.label != "negative"


def test_question_request_praise_and_complaint(scorer) -> None:
    question = toward(scorer, "Does Acme export footnotes to .docx, or only plain text?", "Acme")
    assert question.intents == ("question",) and question.label == "neutral"
    request = toward(scorer, "Please add a dark theme to Acme's export dialog. Thanks!", "Acme")
    assert request.intents == ("request",) and request.label == "neutral"
    both = toward(scorer, "Any plans to add Gantt charts to Acme?", "Acme")
    assert both.intents == ("request", "question")
    praise = toward(scorer, "Acme support fixed my sync issue in ten minutes. Superb.", "Acme")
    assert praise.intents == ("praise",) and praise.label == "positive"
    complaint = toward(scorer, "Acme's app crashes every time I attach a photo.", "Acme")
    assert complaint.intents == ("complaint",) and complaint.label == "negative"
    mixed = toward(
        scorer, "Acme's editor is beautiful and fast. But sync ate three drafts this month.", "Acme"
    )
    assert set(mixed.intents) == {"complaint", "praise"}


def test_intents_are_explained_by_the_words_and_rule_that_decided_them(scorer) -> None:
    score = toward(scorer, "Moving our infra off Acme next quarter.", "Acme")
    cue = next(e for e in score.explanation if e.get("rule") == "intent")
    assert cue == {
        "rule": "intent",
        "intent": "churn",
        "cue": "moving away",
        "words": "moving our infra off <brand>",
    }


# --- measured on posts no rule was written from ------------------------------------------------


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def _measure(scorer: Scorer, rows: list[dict]) -> dict[str, float]:
    sys.path.insert(0, str(ROOT / "bench" / "sentiment"))
    from run import brand_terms  # the bench's own masking, so test and bench agree

    brands = sorted({r["brand"] for r in rows})
    got = []
    for r in rows:
        others = [t for b in brands if b != r["brand"] for t in brand_terms(b)]
        got.append(scorer.score(r["text"], neutralise=brand_terms(r["brand"]), others=others))
    out = {
        "accuracy": sum(s.label == r["label"] for s, r in zip(got, rows, strict=True)) / len(rows)
    }
    for intent in ("churn", "question"):
        predicted = [intent in s.intents for s in got]
        gold = [intent in r["intents"] for r in rows]
        hits = sum(p and g for p, g in zip(predicted, gold, strict=True))
        out[f"{intent}_precision"] = hits / max(1, sum(predicted))
        out[f"{intent}_recall"] = hits / max(1, sum(gold))
    return out


def test_fresh_posts_churn_and_questions(scorer) -> None:
    # Posts written for this project, new brands, labelled before the scorer ever saw them.
    m = _measure(scorer, _rows(FRESH))
    assert m["churn_precision"] >= 0.85 and m["churn_recall"] >= 0.80
    assert m["question_recall"] >= 0.85
    assert m["accuracy"] >= 0.85  # the target; plain VADER: 0.33


@pytest.mark.skipif(not SHARED.is_file(), reason="shared customer-voice data not present")
def test_held_out_posts_do_not_regress(scorer) -> None:
    sys.path.insert(0, str(ROOT / "bench" / "sentiment"))
    from run import tuned_part

    held = [r for r in _rows(SHARED) if not tuned_part(r["text"])]
    m = _measure(scorer, held)
    assert m["accuracy"] >= 0.68  # plain VADER 0.42; before intents 0.6 on the whole file
    assert m["churn_precision"] >= 0.85 and m["question_recall"] >= 0.85


# --- the product: `listener score`, the mentions table, the churn_risk alert -------------------


def test_listener_score_prints_intents(tmp_path) -> None:
    cfg = write_config(tmp_path, [])
    out = CliRunner().invoke(
        cli,
        ["-c", str(cfg), "score", "--brand", "Acme", "Cancelling Acme and moving to Globex."],
    )
    assert out.exit_code == 0, out.output
    line = json.loads(out.output)
    assert line["intents"][0] == "churn" and line["label"] == "negative"
    out = CliRunner().invoke(
        cli,
        ["-c", str(cfg), "score", "--brand", "Globex", "Cancelling Acme and moving to Globex."],
    )
    assert json.loads(out.output)["intents"] == ["praise"]


class Hook:
    def __init__(self) -> None:
        self.got: list[dict] = []

    def __call__(self, request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        self.got.append(json.loads(request.body))
        return 200, {}, b"ok"


CHURN_THREAD = [
    {
        "title": "Acme Rocket and big teams?",
        "link": "https://forum.example.com/t/rocket",
        "guid": "root",
        "body": "How does Acme Rocket cope with 40 people editing at once?",
    },
    {
        "title": "Re: Acme Rocket and big teams?",
        "link": "https://forum.example.com/t/rocket#comment-1",
        "guid": "c1",
        "body": "We're cancelling our 40 Acme seats and moving to Globex next month. "
        "Three crashes during client calls was enough.",
    },
    {
        "title": "Re: Acme Rocket and big teams?",
        "link": "https://forum.example.com/t/rocket#comment-2",
        "guid": "c2",
        "body": "Same here, we're not renewing Acme either.",
    },
]


def test_churn_is_stored_and_alerts_once_per_thread_on_its_own_channels(tmp_path, httpd) -> None:
    success, marketing = Hook(), Hook()
    httpd.add("/success", handler=success)
    httpd.add("/marketing", handler=marketing)
    httpd.add("/forum", rss(CHURN_THREAD, title="Forum"))
    extra = (
        "alerts:\n  channels:\n"
        f"    - name: success\n      kind: webhook\n      url: {httpd.url('/success')}\n"
        f"    - name: marketing\n      kind: webhook\n      url: {httpd.url('/marketing')}\n"
        "  rules:\n    churn_risk: {channels: [success]}\n"
        "    negative_thread: {enabled: false}\n    very_negative_mention: {enabled: false}\n"
    )
    cfg = write_config(tmp_path, [("forum", httpd.url("/forum"))], extra=extra)
    config = load_config(cfg, env={})

    async def main() -> None:
        async with open_runtime(config) as rt:
            await poll_sources(list(config.sources), rt)
        store = Store.open(config.database)
        try:
            async with httpx.AsyncClient() as http:
                await deliver_pending(
                    store,
                    build_channels(config.alerts.channels),
                    http=http,
                    backoff=Backoff(60, 3600),
                    now=lambda: datetime.now(UTC),
                )
        finally:
            store.close()

    asyncio.run(main())
    conn = sqlite3.connect(tmp_path / "mentions.db")
    stored = dict(conn.execute("SELECT snippet, intents FROM mentions WHERE brand = 'Acme'"))
    conn.close()
    by_words = {
        next(w for w in ("How does", "cancelling", "Same here") if w in snippet): json.loads(i)
        for snippet, i in stored.items()
    }
    assert by_words["How does"] == ["question"]  # the replies' "Re: ...?" is not their question
    assert by_words["cancelling"][0] == "churn" and "question" not in by_words["cancelling"]
    assert by_words["Same here"][0] == "churn"
    assert marketing.got == []  # churn goes where the rule says, not everywhere
    assert len(success.got) == 1  # two leaving customers, one conversation: one alert
    alert = success.got[0]
    assert alert["rule"] == "churn_risk" and alert["brand"] == "Acme"
    assert '"cancelling our 40 Acme"' in alert["why"]  # the words that showed it


def test_churn_risk_channels_must_exist(tmp_path) -> None:
    extra = "alerts:\n  channels: []\n  rules:\n    churn_risk: {channels: [success]}\n"
    cfg = write_config(tmp_path, [], extra=extra)
    with pytest.raises(
        ConfigError, match=r"churn_risk\.channels.*no alert channel named 'success'"
    ):
        load_config(cfg, env={})


# --- the brand's own voice ---------------------------------------------------------------------

# What a brand's support account writes: a question, cancel and refund words, an apology.
# Scored as a customer's post it would be churn, complaint and question.
BRAND_REPLY = (
    "Sorry to hear that! If you want to leave, you can cancel your Acme subscription under "
    "Settings > Billing and we will refund the last month. Why not try the new sync first?"
)
CUSTOMER_CHURN = "We're cancelling our Acme seats and moving to Globex. Sync broke twice."


def _authored_rss(entries: list[tuple[str, str, str, str]]) -> str:
    """RSS 2.0 with dc:creator authors: (title, link, author, body) each, newest last."""
    items = "".join(
        f"<item><title>{escape(title)}</title><link>{escape(link)}</link>"
        f"<guid isPermaLink='false'>{escape(link)}</guid><dc:creator>{escape(author)}</dc:creator>"
        f"<pubDate>{format_datetime(BASE_TIME - timedelta(hours=len(entries) - i))}</pubDate>"
        f"<description>{escape(body)}</description></item>"
        for i, (title, link, author, body) in enumerate(entries)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>Forum</title>'
        f"<link>https://forum.example.com/</link><description>d</description>{items}</channel></rss>"
    )


def test_posts_by_the_brands_own_account_carry_no_customer_intent(tmp_path, httpd) -> None:
    topic = "https://forum.example.com/t/acme-sync-broke/77"
    httpd.add(
        "/forum",
        _authored_rss(
            [
                ("Acme sync broke", f"{topic}/1", "rosa", CUSTOMER_CHURN),
                ("Acme sync broke", f"{topic}/2", "Acme Support", BRAND_REPLY),
            ]
        ),
    )
    brands = """\
      - name: Acme
        terms: [Acme]
        accounts: ["Acme Support"]
      - name: Globex
        terms: [Globex]
    """
    cfg = write_config(tmp_path, [("forum", httpd.url("/forum"))], brands=brands)
    out = CliRunner().invoke(cli, ["-c", str(cfg), "poll"])
    assert out.exit_code == 0, out.output
    got = {
        author: (json.loads(intents), by_brand, explanation)
        for author, intents, by_brand, explanation in sqlite3.connect(tmp_path / "mentions.db")
        .execute("SELECT author, intents, by_brand, explanation FROM mentions WHERE brand = 'Acme'")
        .fetchall()
    }
    intents, by_brand, explanation = got["Acme Support"]
    assert by_brand == 1 and intents == []  # not churn, complaint or question
    assert '"intent"' not in explanation  # nor explained as if it were
    assert got["rosa"][0][0] == "churn"  # the customer in the same thread still is
    # The dashboard's churn list shows the customer only.
    churners = [
        r[0]
        for r in sqlite3.connect(tmp_path / "mentions.db").execute(
            "SELECT author FROM mentions WHERE intents LIKE '%\"churn\"%'"
        )
    ]
    assert churners == ["rosa"]


def test_an_account_added_later_takes_the_intent_off_its_posts_and_rescore_keeps_it_off(
    tmp_path, httpd
) -> None:
    topic = "https://forum.example.com/t/acme-billing/78"
    httpd.add(
        "/forum",
        _authored_rss([("Acme billing", f"{topic}/1", "Acme Support", BRAND_REPLY)]),
    )
    cfg = write_config(tmp_path, [("forum", httpd.url("/forum"))])
    assert CliRunner().invoke(cli, ["-c", str(cfg), "poll"]).exit_code == 0

    def stored() -> tuple[list[str], int]:
        conn = sqlite3.connect(tmp_path / "mentions.db")
        try:
            intents, by_brand = conn.execute(
                "SELECT intents, by_brand FROM mentions WHERE brand = 'Acme'"
            ).fetchone()
        finally:
            conn.close()
        return json.loads(intents), by_brand

    assert stored()[0][0] == "churn"  # nobody said whose account it is yet
    # The user adds the support account to the brand; the next poll sees the same post again.
    text = cfg.read_text().replace(
        'terms: [Acme, "Acme Corp", "@acme"]',
        'terms: [Acme, "Acme Corp", "@acme"]\n    accounts: ["Acme Support"]',
    )
    assert "accounts:" in text
    cfg.write_text(text)
    httpd.add(  # the topic goes on: the feed is read again, the old post seen again
        "/forum",
        _authored_rss(
            [
                ("Acme billing", f"{topic}/1", "Acme Support", BRAND_REPLY),
                ("Acme billing", f"{topic}/2", "kim", "Thanks, Acme, found it."),
            ]
        ),
    )
    assert CliRunner().invoke(cli, ["-c", str(cfg), "poll"]).exit_code == 0
    assert stored() == ([], 1)
    out = CliRunner().invoke(cli, ["-c", str(cfg), "rescore", "--all"])
    assert out.exit_code == 0, out.output
    assert stored() == ([], 1)  # re-scoring does not bring a customer intent back


# --- churn_risk through `listener run` ---------------------------------------------------------


def test_listener_run_raises_one_churn_risk_alert_on_the_churn_channel_only(
    tmp_path, httpd
) -> None:
    success, marketing = Hook(), Hook()
    httpd.add("/success", handler=success)
    httpd.add("/marketing", handler=marketing)
    topic = "https://forum.example.com/t/acme-for-agencies/501"
    first = [
        ("Acme for agencies?", f"{topic}/1", "kim", "Is Acme any good for a 12-person agency?"),
        (
            "Re: Acme for agencies?",
            f"{topic}/2",
            "rosa",
            "Honestly? We're not renewing Acme in March, the exports keep failing.",
        ),
    ]
    httpd.add("/forum", _authored_rss(first), etag='"v1"')
    extra = (
        "alerts:\n  channels:\n"
        f"    - name: success\n      kind: webhook\n      url: {httpd.url('/success')}\n"
        f"    - name: marketing\n      kind: webhook\n      url: {httpd.url('/marketing')}\n"
        "  rules:\n    churn_risk: {channels: [success]}\n"
        "    negative_thread: {min_negative: 3, channels: [marketing]}\n"
        "    very_negative_mention: {enabled: false}\n"
        "  flush_every: 0.5s\n  retry_first: 0.5s\n"
    )
    cfg = write_config(tmp_path, [("forum", httpd.url("/forum"))], extra=extra)
    cfg.write_text(cfg.read_text().replace("every: 15m", "every: 1s"))
    db = tmp_path / "mentions.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "listener", "-c", str(cfg), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: success.got, "the churn alert")
        alert = success.got[0]
        assert alert["rule"] == "churn_risk" and alert["brand"] == "Acme"
        assert 'churn: "not renewing"' in alert["why"]  # the words that showed it
        # A second customer of the same conversation leaves too, in a later poll.
        later = [
            *first,
            ("Re: Acme for agencies?", f"{topic}/3", "li", "Same, switching to Globex."),
        ]
        httpd.add("/forum", _authored_rss(later), etag='"v2"')
        wait_for(
            lambda: (
                db_count(db, "SELECT count(*) FROM mentions WHERE intents LIKE '%\"churn\"%'") == 2
            ),
            "the second leaving customer",
        )
        wait_for(
            lambda: (
                db_count(db, "SELECT count(*) FROM outbox WHERE status != 'sent'") == 0
                and db_count(db, "SELECT count(*) FROM sources WHERE last_success_at IS NOT NULL")
            ),
            "the outbox flushed",
        )
        time.sleep(1.5)  # further polls and flushes: nothing more may be sent
        assert len(success.got) == 1, success.got  # one conversation: one churn alert
        # churn goes to its own channel only (the conversation may turn negative there)
        assert [a for a in marketing.got if a["rule"] == "churn_risk"] == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


# --- the brand's own voice ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Hi all, Sam from the Acme support team here. Sorry about the outage, it's fixed now.",
        "Acme support here: thanks for flagging, a fix is rolling out tonight.",
        "Disclosure: I work for Acme. Cancelling the old plan is one click in Settings.",
    ],
)
def test_a_post_by_the_brands_own_staff_carries_no_customer_intent(scorer, text: str) -> None:
    score = toward(scorer, text, "Acme")
    assert score.intents == ()
    assert score.label == "neutral"
    assert any(e.get("rule") == "brand's own voice" for e in score.explanation)


@pytest.mark.parametrize(
    "text",
    [
        "We're on Acme and the support team here has been great.",  # a customer of the brand
        "I used to work at Acme and the product has gone downhill.",  # former staff
    ],
)
def test_customers_who_mention_staff_or_work_are_still_customers(scorer, text: str) -> None:
    assert toward(scorer, text, "Acme").intents != ()
