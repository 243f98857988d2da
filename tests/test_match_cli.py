"""`listener match`: try the brand rules on text before they go live, and backtest them over a
polled database (`--stored`)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import rows, rss, write_config

from listener.cli import cli
from listener.config import load_config
from listener.pipeline import poll_sources
from listener.runtime import open_runtime

BRANDS = """\
- name: Linear
  query: '(Linear OR linear.app) AND NOT ("linear algebra" OR "linear regression")'
- name: Acme
  terms: [Acme, acme.com]
  exclude: ["Acme Brick"]
- name: Notion
  query: 'Notion AND (title:Notion OR author:NotionHQ OR source:notion-blog)'
"""


def run(cfg: Path, *args: str, stdin: str | None = None) -> tuple[int, list[dict]]:
    result = CliRunner().invoke(cli, ["-c", str(cfg), "match", *args], input=stdin)
    return result.exit_code, [json.loads(line) for line in result.output.splitlines()]


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return write_config(tmp_path, [], brands=BRANDS)


def test_match_arguments_one_json_line_each_with_why(cfg: Path) -> None:
    code, out = run(
        cfg, "Our sprints live in Linear now.", "Linear algebra is hard", "Nothing to see"
    )
    assert code == 0
    [kept] = out[0]["mentions"]
    assert kept["brand"] == "Linear" and kept["terms"] == ["Linear"]
    assert kept["snippet"] == "Our sprints live in Linear now."
    assert '"Linear" found' in kept["why"]
    assert out[1]["mentions"] == []
    [why_not] = out[1]["why_not"]
    assert why_not["brand"] == "Linear" and "linear algebra" in why_not["why"]
    assert out[2] == {"mentions": []}


def test_match_json_lines_with_title_url_author_source(cfg: Path) -> None:
    lines = [
        {"id": 1, "text": "Notion is my notebook", "title": "Why I love Notion"},
        {"id": 2, "text": "the notion of time", "title": "Philosophy"},
        {"id": 3, "text": "Notion shipped offline mode", "author": "NotionHQ"},
        {"id": 4, "text": "Buy at https://shop.example/?partner=acme or acme.com", "source": "x"},
        {"id": 5, "text": "Acme Brick pavers"},
    ]
    code, out = run(cfg, stdin="\n".join(json.dumps(x) for x in lines) + "\n\n{broken\n")
    assert [o.get("id") for o in out[:5]] == [1, 2, 3, 4, 5]
    assert [[m["brand"] for m in o["mentions"]] for o in out[:5]] == [
        ["Notion"],
        [],
        ["Notion"],
        ["Acme"],
        [],
    ]
    assert "title" in out[0]["mentions"][0]["why"]
    assert out[3]["mentions"][0]["terms"] == ["acme.com"]  # not "acme" inside the link
    assert "Acme Brick" in out[4]["why_not"][0]["why"]
    assert out[5] == {
        "error": "not JSON: Expecting property name enclosed in double quotes at column 2",
        "line": 7,
    }
    assert code == 1


# --- backtest ----------------------------------------------------------------------------------

POSTS = [
    ("p1", "Sprint planning", "We moved our sprint planning to Linear and love it."),
    ("p2", "Homework", "Linear algebra homework is due on Friday."),
    ("p3", "Pitch deck app review", "A review of a presentation tool for startups."),
    ("p4", "Cats", "Our cat sleeps all day."),
]


def poll(cfg: Path) -> None:
    config = load_config(cfg, env={})

    async def main() -> None:
        async with open_runtime(config) as rt:
            await poll_sources(list(config.sources), rt)

    asyncio.run(main())


def test_backtest_reports_adds_and_drops_after_a_rule_change(tmp_path: Path, httpd) -> None:
    httpd.add(
        "/feed",
        rss(
            [
                {"title": t, "link": f"https://blog.example.com/{g}", "guid": g, "body": b}
                for g, t, b in POSTS
            ]
        ),
    )
    sources = [("blog", httpd.url("/feed"))]
    # Before: Linear is a plain term, so the algebra homework is a mention.
    cfg = write_config(tmp_path, sources, brands="- name: Linear\n  terms: [Linear]\n")
    poll(cfg)
    # After: a query for Linear, and a new brand Pitch.
    cfg = write_config(
        tmp_path,
        sources,
        brands="""\
        - name: Linear
          query: 'Linear AND NOT "linear algebra"'
        - name: Pitch
          query: 'Pitch NEAR/2 (deck OR app)'
        """,
    )
    result = CliRunner().invoke(cli, ["-c", str(cfg), "match", "--stored", "--since", "30d"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "backtest over 4 stored items first seen in the last 30d" in out
    assert "(2 with only a title stored" in out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:4]}
    assert lines == {"Linear": ["2", "1", "0", "1"], "Pitch": ["0", "0", "1", "0"]}
    assert "Linear: would drop item 2 https://blog.example.com/p2" in out
    assert "NOT" in out and "linear algebra" in out
    assert "Pitch: would add item 3 https://blog.example.com/p3" in out

    as_json = CliRunner().invoke(cli, ["-c", str(cfg), "match", "--stored", "--json"])
    report = json.loads(as_json.output)
    assert report["items"] == 4
    assert report["brands"]["Linear"]["dropped"] == 1
    assert report["brands"]["Linear"]["drop_examples"][0]["item_id"] == 2
    assert report["brands"]["Pitch"]["add_examples"][0]["title"] == "Pitch deck app review"


def test_backtest_needs_a_database_and_no_text(cfg: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["-c", str(cfg), "match", "--stored"])
    assert result.exit_code == 1 and "no database yet" in result.output
    result = runner.invoke(cli, ["-c", str(cfg), "match", "--stored", "some text"])
    assert result.exit_code == 2
    result = runner.invoke(cli, ["-c", str(cfg), "match", "--stored", "--since", "soon"])
    assert result.exit_code == 2 and "not a duration" in result.output


def test_apply_after_a_rule_change_adds_scored_mentions_and_drops_the_rest(
    tmp_path: Path, httpd
) -> None:
    posts = [
        *POSTS,
        (
            "p5",
            "Tools",
            "We use Linear daily. The Pitch deck app crashed again, awful and useless.",
        ),
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
    sources = [("blog", httpd.url("/feed"))]
    cfg = write_config(tmp_path, sources, brands="- name: Linear\n  terms: [Linear]\n")
    poll(cfg)
    cfg = write_config(
        tmp_path,
        sources,
        brands="""\
        - name: Linear
          query: 'Linear AND NOT "linear algebra"'
        - name: Pitch
          query: 'Pitch NEAR/2 (deck OR app)'
        """,
    )
    result = CliRunner().invoke(cli, ["-c", str(cfg), "match", "--stored", "--apply"])
    assert result.exit_code == 0, result.output
    assert "applied: 2 mentions added, 1 marked not relevant" in result.output
    assert "  Pitch: 2 added, 0 marked not relevant" in result.output
    assert "  Linear: 0 added, 1 marked not relevant" in result.output

    stored = rows(
        tmp_path,
        "SELECT m.url, m.brand, m.label, m.not_relevant, m.lang, m.intents, i.relevant "
        "FROM mentions m JOIN items i ON i.id = m.item_id ORDER BY m.url, m.brand",
    )
    by = {(url.rsplit("/", 1)[1], brand): rest for url, brand, *rest in stored}
    assert by[("p2", "Linear")][1] == 1  # the homework: not relevant now
    assert by[("p1", "Linear")][1] == 0
    # Scored as a poll would: the crash is negative toward Pitch, in English, a complaint.
    label, not_relevant, lang, intents, relevant = by[("p5", "Pitch")]
    assert (label, not_relevant, lang, relevant) == ("negative", 0, "en", 1)
    assert "complaint" in json.loads(intents)
    # A title-only item the rules now name becomes a mention, scored on its title ("deck app
    # review" once the brand is set aside: too short to tell its language).
    assert by[("p3", "Pitch")] == ["neutral", 0, None, "[]", 1]  # too short to tell
    stats = CliRunner().invoke(cli, ["-c", str(cfg), "stats"]).output
    assert {line.split()[0]: line.split()[1] for line in stats.splitlines()[1:3]} == {
        "Linear": "2",
        "Pitch": "2",
    }
    threads = rows(tmp_path, "SELECT brands FROM threads WHERE url LIKE '%p2'")
    assert threads == [(None,)]

    again = CliRunner().invoke(cli, ["-c", str(cfg), "match", "--stored", "--apply", "--json"])
    assert json.loads(again.output)["applied"] == {"items": 5, "added": {}, "dropped": {}}
