"""Conversations from generic feeds, and the brand's own voice, through `listener poll`.

A forum served as a plain RSS feed (Discourse-style topic URLs), a WordPress-style comment feed and
a phpBB-style Atom feed, on the loopback server: each post lands in its topic's thread, and a
reply by one of the brand's `accounts:` marks the thread answered and is never a negative post.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from datetime import timedelta
from email.utils import format_datetime
from html import escape
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import BASE_TIME, rows, write_config

from listener.analyse import author_brand, brand_accounts
from listener.cli import cli
from listener.models import Brand
from listener.views import CANNED_QUERIES
from listener.web.serve import make_datasette

BRANDS = """\
- name: Acme
  terms: [Acme]
  accounts: ["Acme Support", "u/acme_official", "@acme@mastodon.social"]
- name: Globex
  terms: [Globex]
"""

ANGRY = [
    "The Acme app keeps crashing. Terrible, I want a refund.",
    "Same here, Acme lost all my data. Awful and useless.",
    "Acme support ignored me for a week. This is the worst, I am furious.",
]
# The brand's apology: scored negative on its words, but it is the brand talking.
# More negative, word for word, than any customer's post.
APOLOGY = (
    "We are so sorry. This is an awful, terrible, horrible failure and we hate that it hurt you."
)


def _rss(entries: list[tuple[str, str, str, str, float]]) -> str:
    """RSS 2.0 with dc:creator authors: (title, link, author, body, hours ago) each."""
    items = "".join(
        f"<item><title>{escape(title)}</title><link>{escape(link)}</link>"
        f"<guid isPermaLink='false'>{escape(link)}</guid><dc:creator>{escape(author)}</dc:creator>"
        f"<pubDate>{format_datetime(BASE_TIME - timedelta(hours=ago))}</pubDate>"
        f"<description>{escape(body)}</description></item>"
        for title, link, author, body, ago in entries
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>Feed</title>'
        f"<link>https://example.com/</link><description>d</description>{items}</channel></rss>"
    )


def _atom(entries: list[tuple[str, str, str, str, str, float]]) -> str:
    """Atom as phpBB writes it: (title, link, id, author, body, hours ago) each."""
    body = "".join(
        f"<entry><title>{escape(title)}</title><link href='{escape(link)}'/>"
        f"<id>{escape(id_)}</id><author><name>{escape(author)}</name></author>"
        f"<updated>{(BASE_TIME - timedelta(hours=ago)).isoformat()}</updated>"
        f"<content type='html'>{escape(text)}</content></entry>"
        for title, link, id_, author, text, ago in entries
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>Board</title><id>urn:board</id><updated>{BASE_TIME.isoformat()}</updated>"
        f"{body}</feed>"
    )


FORUM = "https://forum.example.com/t/acme-app-keeps-crashing/881"
BLOG = "https://blog.example.com/2026/acme-refund/"
BOARD = "https://bb.example.com/viewtopic.php"


@pytest.fixture
def sites(httpd):
    # A Discourse forum read as an ordinary RSS feed: every post its own entry.
    httpd.add(
        "/forum/posts.rss",
        _rss(
            [
                ("Acme app keeps crashing", f"{FORUM}/1", "rosa", ANGRY[0], 6),
                ("Acme app keeps crashing", f"{FORUM}/2", "li", ANGRY[1], 5),
                ("Acme app keeps crashing", f"{FORUM}/3", "sam", ANGRY[2], 4),
                # The brand answers (the topic's title names it).
                ("Acme app keeps crashing", f"{FORUM}/4", "Acme Support", APOLOGY, 3),
                (
                    "Globex is fine",
                    "https://forum.example.com/t/globex-is-fine/900",
                    "kim",
                    "Globex works well for me.",
                    2,
                ),
            ]
        ),
    )
    # WordPress's site-wide comment feed: each comment links to its post's #comment-N anchor.
    httpd.add(
        "/blog/comments/feed",
        _rss(
            [
                ("Comment on Acme refund saga by Rosa", f"{BLOG}#comment-11", "Rosa", ANGRY[0], 6),
                ("Comment on Acme refund saga by Li", f"{BLOG}#comment-12", "Li", ANGRY[1], 5),
                (
                    "Comment on Acme refund saga by Acme Support",
                    f"{BLOG}#comment-13",
                    "Acme Support",
                    APOLOGY,  # without naming the brand: a reply in its thread
                    1,
                ),
                (
                    "Comment on Skating tips by Kim",
                    "https://blog.example.com/2026/skating-tips/#comment-14",
                    "Kim",
                    "Acme skates are great fun.",
                    1,
                ),
            ]
        ),
    )
    # phpBB's Atom feed: "Forum • Re: Topic" titles; one post linked by its post id only, its
    # <id> naming the topic.
    httpd.add(
        "/board/feed.php",
        _atom(
            [
                (
                    "Support • Acme ate my files",
                    f"{BOARD}?f=2&t=42&p=100#p100",
                    f"{BOARD}?t=42&p=100#p100",
                    "rosa",
                    ANGRY[1],
                    8,
                ),
                (
                    "Support • Re: Acme ate my files",
                    f"{BOARD}?p=101#p101",
                    f"{BOARD}?t=42&p=101#p101",
                    "li",
                    ANGRY[2],
                    7,
                ),
                (
                    "Support • Re: Acme ate my files",
                    f"{BOARD}?f=2&t=42&p=102#p102",
                    f"{BOARD}?t=42&p=102#p102",
                    "acme_official",
                    APOLOGY,
                    6,
                ),
            ]
        ),
        content_type="application/atom+xml",
    )
    return httpd


def _poll(tmp_path: Path, sites) -> Path:
    cfg = write_config(
        tmp_path,
        [
            ("forum", sites.url("/forum/posts.rss")),
            ("wp-comments", sites.url("/blog/comments/feed")),
            ("board", sites.url("/board/feed.php")),
        ],
        brands=BRANDS,
    )
    result = CliRunner().invoke(cli, ["-c", str(cfg), "poll"])
    assert result.exit_code == 0, result.output
    assert "sources: 3 ok, 0 failed" in result.output
    return cfg


def _threads(tmp_path: Path) -> dict[str, tuple]:
    return {
        key: rest
        for key, *rest in rows(
            tmp_path,
            "SELECT key, posts, negative_posts, answered_at IS NOT NULL, first_negative_at "
            "IS NOT NULL FROM threads",
        )
    }


def test_forum_blog_and_board_posts_group_into_their_topics(tmp_path, sites):
    _poll(tmp_path, sites)
    threads = _threads(tmp_path)
    # One thread row per topic, with every post of it.
    assert threads["discourse:forum.example.com:881"][0] == 4
    assert threads["blog.example.com/2026/acme-refund"][0] == 3
    assert threads["bb.example.com/viewtopic.php?t=42"][0] == 3
    assert threads["blog.example.com/2026/skating-tips"][0] == 1
    # Nothing else: no one-post thread per forum post.
    assert len(threads) == 5
    assert "discourse:forum.example.com:900" in threads  # the Globex topic: its own thread
    # The forum's thread title is the topic's; its posts are replies to it.
    title, url = rows(
        tmp_path, "SELECT title, url FROM threads WHERE key = 'discourse:forum.example.com:881'"
    )[0]
    assert title == "Acme app keeps crashing" and url == f"{FORUM}/1"
    replies = rows(
        tmp_path,
        "SELECT count(*) FROM items WHERE thread_key = 'discourse:forum.example.com:881' "
        "AND is_reply = 1",
    )
    assert replies == [(3,)]


def test_the_brands_reply_marks_the_thread_answered_and_is_never_a_negative_post(tmp_path, sites):
    _poll(tmp_path, sites)
    threads = _threads(tmp_path)
    # (posts, negative posts, answered, first negative known): the apology is scored negative
    # on its words, yet only the customers' posts are the thread's negative posts.
    assert threads["discourse:forum.example.com:881"] == [4, 3, 1, 1]
    assert threads["blog.example.com/2026/acme-refund"] == [3, 2, 1, 1]
    assert threads["bb.example.com/viewtopic.php?t=42"] == [3, 2, 1, 1]
    assert threads["blog.example.com/2026/skating-tips"][2] == 0  # nobody from Acme there
    # answered_at is the reply's time, first_negative_at the first angry customer's.
    answered, first_negative = rows(
        tmp_path,
        "SELECT answered_at, first_negative_at FROM threads "
        "WHERE key = 'discourse:forum.example.com:881'",
    )[0]
    assert answered == (BASE_TIME - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert first_negative == (BASE_TIME - timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
    # The reply that does not name the brand is stored as the brand's, in its thread.
    assert rows(
        tmp_path,
        "SELECT i.by_brand, i.label, count(m.id) FROM items i LEFT JOIN mentions m "
        "ON m.item_id = i.id WHERE i.thread_key = 'blog.example.com/2026/acme-refund' "
        "AND i.author = 'Acme Support'",
    ) == [(1, "negative", 0)]
    # The replies that name the brand are mentions marked as the brand's own: "Acme Support"
    # on the forum, acme_official on the board (an account listed as "u/acme_official").
    assert sorted(
        rows(tmp_path, "SELECT author, brand, by_brand FROM mentions WHERE by_brand = 1")
    ) == [
        ("Acme Support", "Acme", 1),
        ("acme_official", "Acme", 1),
    ]
    # Customers are never the brand.
    assert rows(tmp_path, "SELECT count(*) FROM items WHERE author = 'rosa' AND by_brand = 1") == [
        (0,)
    ]


def test_the_brands_replies_are_never_among_the_worst_posts(tmp_path, sites):
    _poll(tmp_path, sites)
    conn = sqlite3.connect(tmp_path / "mentions.db")
    try:
        conn.row_factory = sqlite3.Row
        for name in ("negative_mentions", "negative_authors", "negative_threads"):
            sql = CANNED_QUERIES[name]["sql"]
            found = [dict(r) for r in conn.execute(sql, {"hours": "", "days": "", "brand": ""})]
            assert found, name
            authors = {r.get("author") or r.get("worst_author") for r in found}
            assert not authors & {"Acme Support", "acme_official"}, name
        worst = [dict(r) for r in conn.execute("SELECT * FROM negative_threads")]
        assert {w["thread_key"] for w in worst} >= {"discourse:forum.example.com:881"}
        assert all(w["worst_author"] not in ("Acme Support", "acme_official") for w in worst)
    finally:
        conn.close()


def test_the_dashboards_most_negative_posts_leave_out_the_brands_replies(tmp_path, sites):
    _poll(tmp_path, sites)
    ds = make_datasette(tmp_path / "mentions.db")

    async def page() -> str:
        await ds.invoke_startup()
        return (await ds.client.get("/-/dashboard")).text

    worst = asyncio.run(page()).split("<h2>Most negative posts</h2>", 1)[1].split("</section>")[0]
    posts = re.findall(r'<td class="post">“([^”]+)”', worst)
    assert posts  # the customers' angry posts
    assert not any("so sorry" in p for p in posts)  # the most negative words of all


def test_a_later_reply_keeps_the_first_answer_time(tmp_path, sites):
    cfg = _poll(tmp_path, sites)
    key = "discourse:forum.example.com:881"
    (first,) = rows(tmp_path, "SELECT answered_at FROM threads WHERE key = ?", key)[0]
    sites.add(
        "/forum/posts.rss",
        _rss(
            [
                ("Acme app keeps crashing", f"{FORUM}/5", "rosa", ANGRY[2], 1),
                ("Acme app keeps crashing", f"{FORUM}/6", "Acme Support", APOLOGY, 0.5),
            ]
        ),
    )
    result = CliRunner().invoke(cli, ["-c", str(cfg), "poll", "--source", "forum"])
    assert result.exit_code == 0, result.output
    assert rows(
        tmp_path,
        "SELECT posts, negative_posts, answered_at FROM threads WHERE key = ?",
        key,
    ) == [(6, 4, first)]


def test_check_says_when_a_feed_is_a_forum_with_its_own_kind(tmp_path):
    cfg = write_config(
        tmp_path,
        [
            ("forum", "https://forum.example.com/latest.rss"),
            ("forum-cat", "https://community.example.com/forum/c/support/5.rss"),
            ("sub", "https://www.reddit.com/r/acme/.rss"),
            ("so", "https://stackoverflow.com/feeds/tag/acme"),
            ("blog", "https://blog.example.com/feed"),
        ],
        brands=BRANDS,
    )
    result = CliRunner().invoke(cli, ["-c", str(cfg), "check"])
    assert result.exit_code == 0, result.output
    hints = [line for line in result.output.splitlines() if line.startswith("hint: ")]
    assert hints[0] == (
        "hint: forum: https://forum.example.com/latest.rss looks like a Discourse forum: use "
        "`kind: discourse` with `base_url: https://forum.example.com` to read every post and "
        "follow its topics"
    )
    assert "`base_url: https://community.example.com/forum`" in hints[1]
    assert hints[2].startswith("hint: sub:") and "`kind: reddit` with `subreddit: acme`" in hints[2]
    assert hints[3].startswith("hint: so:") and "`sites: [stackoverflow]`" in hints[3]
    assert len(hints) == 4  # the blog is a feed


@pytest.mark.parametrize(
    ("author", "brand"),
    [
        ("Acme Support", "Acme"),
        ("acme  SUPPORT", "Acme"),  # case and spacing as a platform shows them
        ("/u/acme_official", "Acme"),  # Reddit shows "/u/", the config says "u/"
        ("acme_official", "Acme"),
        ("acme@mastodon.social", "Acme"),  # Mastodon's acct; the config says "@acme@..."
        ("@acme@mastodon.social", "Acme"),
        ("support@acme.example (Acme Support)", "Acme"),  # an RSS author: email (name)
        ("Acme Support <support@acme.example>", "Acme"),
        ("acme.bsky.social", "Globex"),  # listed by Globex only
        ("acme", None),  # a bare name is not the Mastodon account
        ("acme@other.social", None),
        ("Rosa", None),
        (None, None),
    ],
)
def test_a_brands_accounts_are_recognised_in_every_form_a_platform_shows(author, brand):
    accounts = brand_accounts(
        [
            Brand(
                "Acme",
                ("Acme",),
                accounts=("Acme Support", "u/acme_official", "@acme@mastodon.social"),
            ),
            Brand("Globex", ("Globex",), accounts=("@acme.bsky.social",)),
        ]
    )
    assert author_brand(author, accounts) == brand


def test_the_brands_own_opening_post_is_not_an_answer(tmp_path, httpd):
    # The brand's blog post opens the conversation; customers complain under it. Nobody from the
    # brand has answered them until a reply of the brand's arrives.
    post = "https://blog.example.com/2026/acme-pricing/"
    opening = ("Acme pricing update", post, "Acme Support", "Acme prices change next month.", 9)
    complaints = [
        ("Comment by Rosa", f"{post}#comment-1", "Rosa", ANGRY[0], 6),
        ("Comment by Li", f"{post}#comment-2", "Li", ANGRY[1], 5),
    ]
    httpd.add("/blog/feed", _rss([opening, *complaints]), etag='"v1"')
    cfg = write_config(tmp_path, [("blog", httpd.url("/blog/feed"))], brands=BRANDS)
    runner = CliRunner()
    assert runner.invoke(cli, ["-c", str(cfg), "poll"]).exit_code == 0
    key = "blog.example.com/2026/acme-pricing"
    assert rows(tmp_path, "SELECT answered_at FROM threads WHERE key = ?", key) == [(None,)]
    reply = ("Comment by Acme Support", f"{post}#comment-3", "Acme Support", APOLOGY, 1)
    httpd.add("/blog/feed", _rss([opening, *complaints, reply]), etag='"v2"')
    assert runner.invoke(cli, ["-c", str(cfg), "poll"]).exit_code == 0
    answered = (BASE_TIME - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert rows(tmp_path, "SELECT answered_at FROM threads WHERE key = ?", key) == [(answered,)]
