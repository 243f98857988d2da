"""parse_feed on small hand-written feeds: formats, threads, hostile and broken documents."""

from __future__ import annotations

import json
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest

from listener.parse import MAX_ITEMS, MAX_TEXT_CHARS, NotAFeed, ParsedFeed, parse_feed
from listener.text import url_identity

FIXTURES = Path(__file__).parent / "fixtures" / "feeds"
FEED_URL = "https://feeds.example.com/feed.xml"


def parse(name: str, **kwargs) -> ParsedFeed:
    kwargs.setdefault("url", FEED_URL)
    return parse_feed((FIXTURES / name).read_bytes(), source="test", **kwargs)


def rss(items: str, *, decl: str = '<?xml version="1.0" encoding="utf-8"?>') -> str:
    return (
        f'{decl}<rss version="2.0"><channel><title>T</title><link>https://ex.com/</link>'
        f"{items}</channel></rss>"
    )


# ------------------------------------------------------------------------------------ formats


def test_rss2_with_content_encoded_and_comment_feed():
    feed = parse("rss2_content_wfw.xml")
    assert feed.title == "Road Runner Gear Blog"
    assert feed.parser == "fastfeedparser" and feed.warning is None
    post, diner = feed.items
    assert post.title == "Acme Rocket Skates: three months in"
    # content:encoded wins over description; script and style are gone; paragraphs are lines.
    assert post.text == (
        "Short version: the Acme Rocket Skates are fast.\n"
        "The brakes failed twice & I ended up in a canyon.\nSpeed: 10/10\nSafety: 2/10"
    )
    assert post.url == "https://blog.example.com/2024/05/acme-rocket-skates"  # utm_* dropped
    assert post.raw_url.endswith("?utm_source=rss&utm_medium=rss&utm_campaign=acme-rocket-skates")
    assert post.native_id == "https://blog.example.com/?p=101"
    assert post.author == "Wile E. Coyote"
    assert post.published_at == datetime(2024, 5, 14, 7, 30, tzinfo=UTC)
    assert post.thread_key == "blog.example.com/2024/05/acme-rocket-skates"
    assert post.thread_url == "https://blog.example.com/2024/05/acme-rocket-skates/feed/"
    assert post.extra["comments_url"].endswith("/acme-rocket-skates/#comments")
    assert not post.is_reply and post.parent_key is None
    # An escaped-HTML description and a numeric entity in the title.
    assert diner.title == "Café stop: the desert diner"
    assert diner.text == "Beep beep. The pie was excellent."


def test_wordpress_comments_join_the_thread_of_their_post():
    post = parse("rss2_content_wfw.xml").items[0]
    comments = parse("wp_comments.xml").items
    assert [c.author for c in comments] == ["Road Runner", "Wile E. Coyote"]
    for comment in comments:
        assert comment.is_reply
        assert comment.thread_key == post.thread_key
        assert comment.parent_key == post.thread_key  # the post: the feed gives no finer parent
    # Each comment stays its own item: distinct ids, and the link keeps its anchor.
    assert len({c.native_id for c in comments}) == 2
    assert comments[0].raw_url.endswith("#comment-12")
    assert comments[0].text == "Mine broke after a week. Acme refused the refund."


def test_atom10_replies_share_the_thread_of_the_entry_they_answer():
    post, reply, reply_to_reply = parse("atom10_threads.xml").items
    assert post.title == "Why the Acme Anvil keeps falling"  # type="html" title, tags stripped
    assert post.text == "The anvil is heavy.\nGravity does the rest."  # XHTML content
    assert post.thread_url == "https://desert.example.org/posts/acme-anvil/comments.atom"
    assert post.published_at == datetime(2024, 6, 1, 13, 0, tzinfo=UTC)
    assert post.updated_at == datetime(2024, 6, 1, 14, 15, tzinfo=UTC)
    assert not post.is_reply
    # thr:in-reply-to: the parent is in the feed, so its thread is taken over.
    assert reply.is_reply and reply.parent_key == post.native_id
    assert reply.thread_key == post.thread_key
    # A reply to a reply, whose own link says nothing about the post, is still in the thread.
    assert reply_to_reply.is_reply and reply_to_reply.parent_key == reply.native_id
    assert reply_to_reply.thread_key == post.thread_key
    assert reply_to_reply.text == "Mine neither. Three weeks & counting."  # type="text"


def test_in_reply_to_a_parent_outside_the_feed_uses_the_parent_link():
    body = b"""<feed xmlns="http://www.w3.org/2005/Atom" xmlns:thr="http://purl.org/syndication/thread/1.0">
      <title>Comments</title>
      <entry><id>tag:x,2024:c1</id><title>Re</title><link href="https://ex.com/c/1"/>
        <thr:in-reply-to ref="tag:x,2024:post" href="https://www.ex.com/post/?utm_source=a"/>
        <content>Acme is late again.</content></entry></feed>"""
    (item,) = parse_feed(body, source="test", url=FEED_URL).items
    assert item.is_reply
    assert item.thread_key == "ex.com/post"
    assert item.parent_key == "tag:x,2024:post"


def test_rss1_rdf():
    feed = parse("rss1_rdf.xml")
    factory, birds = feed.items
    assert feed.title == "Example Net News"
    assert factory.title == "Acme opens a new factory"
    assert factory.text == "The plant will employ 300 people."
    assert factory.author == "Newsdesk"
    assert factory.published_at == datetime(2024, 3, 1, 9, 0, tzinfo=UTC)  # dc:date
    assert birds.text == "Birdwatchers are delighted."  # content:encoded in an RDF item


def test_atom03():
    (item,) = parse("atom03.xml").items
    assert item.title == "Acme Giant Magnet review"
    assert item.text == "It attracts everything."  # mode="escaped" HTML
    assert item.url == "http://old.example.com/2005/08/magnet.html"
    assert item.published_at == datetime(2005, 8, 9, 17, 0, tzinfo=UTC)  # <issued>
    assert item.updated_at == datetime(2005, 8, 9, 18, 0, tzinfo=UTC)  # <modified>
    assert item.author == "Elmer"


def test_json_feed_11():
    feed = parse("jsonfeed11.json")
    assert feed.parser == "jsonfeed" and feed.title == "Coyote Microblog"
    skates, note, bare = feed.items  # "not an object" and {} are dropped
    assert skates.url == "https://micro.example.com/2024/07/01/skates"
    assert skates.raw_url.endswith("?utm_source=jsonfeed")
    assert skates.text == "Ordered another pair of Acme Rocket Skates.\nWhat could go wrong?"
    assert skates.author == "Wile E. Coyote"
    assert skates.published_at == datetime(2024, 7, 1, 16, 0, tzinfo=UTC)
    assert skates.updated_at == datetime(2024, 7, 1, 17, 0, tzinfo=UTC)
    # Relative url against home_page_url, numeric id, content_text keeps its paragraphs.
    assert note.url == "https://micro.example.com/2024/07/02/note"
    assert note.native_id == "42"
    assert note.text == "Just a note.\nNothing about brands."
    assert note.author == "Road Runner"
    assert bare.native_id == "empty-one" and bare.url == "" and bare.thread_key


def test_json_feed_10_and_tolerated_omissions():
    doc = {
        "version": "https://jsonfeed.org/version/1",
        "items": [{"id": "1", "content_text": "Acme rocks", "author": {"name": "Old style"}}],
    }
    feed = parse_feed(json.dumps(doc).encode(), source="test", url=FEED_URL)
    assert feed.title is None and feed.warning is None
    assert feed.items[0].author == "Old style"
    unversioned = parse_feed(b'{"items": [{"id": "1", "title": "Hi"}]}', source="t", url=FEED_URL)
    assert unversioned.items[0].title == "Hi"
    assert "version" in unversioned.warning


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "invalid JSON"),
        (b'{"data": [1, 2]}', "not a JSON Feed"),
        (b"[1, 2, 3]", "not a JSON Feed"),
    ],
)
def test_json_that_is_not_a_json_feed(body, reason):
    with pytest.raises(NotAFeed, match=reason):
        parse_feed(body, source="test", url=FEED_URL)


def test_reddit_atom_feed():
    post, comment = parse("reddit.atom").items
    assert post.thread_key == comment.thread_key == "reddit:1e8xk2q"
    assert not post.is_reply and post.native_id == "t3_1e8xk2q"
    assert comment.is_reply and comment.parent_key == "reddit:1e8xk2q"
    assert post.text == "Halfway down the mesa they just burst into flames.\nsubmitted by /u/wile_e"
    assert comment.text == "Same thing happened to me. Never buying Acme again."
    assert comment.author == "/u/road_runner"


def test_google_alerts_links_are_unwrapped_and_bold_is_stripped():
    recall, review = parse("google_alerts.atom").items
    assert recall.title == "Acme recalls 10,000 pairs of rocket skates"
    assert recall.text.startswith("The Acme Corporation said on Monday")
    assert "<b>" not in recall.text
    assert recall.url == "https://news.example.org/2024/09/acme-recall?id=7"
    assert recall.raw_url.startswith("https://www.google.com/url?")
    assert recall.thread_key == "news.example.org/2024/09/acme-recall?id=7"
    assert recall.author is None  # <name></name>
    assert review.url == "http://www.reviews.example.com/anvil"
    assert url_identity(review.url) == "reviews.example.com/anvil"


def test_hacker_news_style_item_belongs_to_its_discussion():
    body = rss(
        "<item><title>Acme launches skates</title><link>https://acme.example/launch</link>"
        "<comments>https://news.ycombinator.com/item?id=4242</comments></item>"
    ).encode()
    (item,) = parse_feed(body, source="hn", url=FEED_URL).items
    assert item.url == "https://acme.example/launch"
    assert item.thread_key == "hn:4242"


def test_relative_links_resolve_against_the_feed_link_then_the_document():
    body = rss("<item><title>a</title><link>/posts/1/</link></item>").encode()
    assert parse_feed(body, source="t", url=FEED_URL).items[0].url == "https://ex.com/posts/1"
    no_link = (
        b'<rss version="2.0"><channel><item><title>a</title><link>p/2</link></item></channel></rss>'
    )
    item = parse_feed(
        no_link, source="t", url=FEED_URL, headers={"Content-Location": "/blog/index.xml"}
    ).items[0]
    assert item.url == "https://feeds.example.com/blog/p/2"


def test_empty_items_are_dropped_and_a_feed_without_items_is_still_a_feed():
    body = rss("<item><category>x</category></item><item><title>kept</title></item>").encode()
    feed = parse_feed(body, source="t", url=FEED_URL)
    assert [i.title for i in feed.items] == ["kept"]
    assert parse_feed(rss("").encode(), source="t", url=FEED_URL).items == []


def test_items_and_text_are_capped():
    many = "".join(
        f"<item><title>n{i}</title><link>https://ex.com/{i}</link></item>"
        for i in range(MAX_ITEMS + 100)
    )
    assert len(parse_feed(rss(many).encode(), source="t", url=FEED_URL).items) == MAX_ITEMS
    huge = rss(f"<item><title>big</title><description>{'word ' * 60_000}</description></item>")
    (item,) = parse_feed(huge.encode(), source="t", url=FEED_URL).items
    assert len(item.text) == MAX_TEXT_CHARS


@pytest.mark.parametrize("form", ["rss", "rss-latin-1", "json"])
def test_a_feed_cut_to_its_first_entries_says_so(form):
    # The fast parser, feedparser (a document in another charset goes there) and JSON Feed.
    n = MAX_ITEMS + 50
    if form == "json":
        items = [{"id": str(i), "url": f"https://ex.com/{i}", "title": f"n{i}"} for i in range(n)]
        body = json.dumps({"version": "https://jsonfeed.org/version/1.1", "items": items})
    else:
        entries = "".join(
            f"<item><title>n{i}</title><link>https://ex.com/{i}</link></item>" for i in range(n)
        )
        latin = '<?xml version="1.0" encoding="iso-8859-1"?>'
        body = rss(entries, decl=latin) if form == "rss-latin-1" else rss(entries)
    feed = parse_feed(body.encode(), source="t", url=FEED_URL)
    assert len(feed.items) == MAX_ITEMS and feed.dropped == 50
    assert feed.truncation == "feed cut: it has 2,050 entries, only the first 2,000 were read"
    whole = parse_feed(rss("<item><title>a</title></item>").encode(), source="t", url=FEED_URL)
    assert whole.dropped == 0 and whole.truncation is None


# ------------------------------------------------------------------------------- not a feed


def test_html_login_page_is_not_a_feed():
    with pytest.raises(NotAFeed, match=r"got an HTML page \(a login, error or home page\?\)") as e:
        parse("login.html", content_type="text/html; charset=utf-8")
    # Described, never quoted: the message is stored and shown, whoever answered.
    assert "Sign in" not in str(e.value)
    # Without a DOCTYPE or a content type it is recognised all the same.
    with pytest.raises(NotAFeed, match="HTML page"):
        parse_feed(b"<html><body><p>Error 502</p></body></html>", source="t", url=FEED_URL)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b"  \n\t ", "empty"),
        (b"Service temporarily unavailable", "neither XML nor JSON"),
        (b'<?xml version="1.0"?><urlset><url><loc>https://ex.com/</loc></url></urlset>', "sitemap"),
        (b'<?xml version="1.0"?><opml version="2.0"><body/></opml>', "OPML"),
        (b'<?xml version="1.0"?><!-- nothing here -->', "without any element"),
        (b'<?xml version="1.0"?><catalog><book>Acme</book></catalog>', "root <catalog>"),
    ],
)
def test_other_documents_are_not_feeds(body, reason):
    with pytest.raises(NotAFeed, match=reason) as e:
        parse_feed(body, source="t", url=FEED_URL)
    assert "temporarily" not in str(e.value)  # the body is described, not quoted


def test_a_feed_served_as_text_html_is_still_a_feed():
    feed = parse("rss2_content_wfw.xml", content_type="text/html")
    assert len(feed.items) == 2


# -------------------------------------------------------------------------------- hostile XML


@pytest.mark.timeout(20)
def test_billion_laughs_is_not_expanded():
    tracemalloc.start()
    try:
        feed = parse("billion_laughs.xml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024
    (item,) = feed.items
    assert "lollol" not in item.title + item.text + (feed.title or "")
    assert item.title == "Entry &lol9;"  # the unresolved reference stays visible, inert
    assert "DOCTYPE removed" in feed.warning


@pytest.mark.timeout(20)
def test_one_big_entity_referenced_many_times_is_bounded():
    big = "A" * 1000
    refs = "&big;" * 20_000  # 20 MB if every reference were expanded
    body = (
        f'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY big "{big}">\n]>\n'
        f'<rss version="2.0"><channel><title>t</title><item><title>x</title>'
        f"<description>{refs}</description></item></channel></rss>"
    ).encode()
    (item,) = parse_feed(body, source="t", url=FEED_URL).items
    assert len(item.text) <= MAX_TEXT_CHARS


def test_external_entities_are_never_loaded(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    body = (
        (FIXTURES / "xxe.xml").read_bytes().replace(b"file:///etc/passwd", secret.as_uri().encode())
    )
    feed = parse_feed(body, source="t", url=FEED_URL)
    everything = json.dumps([[i.title, i.text] for i in feed.items]) + (feed.title or "")
    assert "TOP-SECRET-MARKER" not in everything
    assert "root:" not in everything
    assert feed.title == "Example site"  # a plain internal entity is still expanded
    assert feed.items[0].text == "before &xxe; after"


def test_xxe_through_feedparser_too():
    # A charset that routes the document to feedparser: same outcome.
    body = (FIXTURES / "xxe.xml").read_bytes()
    feed = parse_feed(body, source="t", url=FEED_URL, content_type="text/xml; charset=iso-8859-1")
    assert feed.parser == "feedparser"
    assert "root:" not in feed.items[0].title + feed.items[0].text


# ------------------------------------------------------------------------------- broken XML


def test_bare_ampersands_and_html_entities_are_recovered():
    feed = parse("malformed_amp.xml")
    first, second = feed.items
    assert feed.title == "Broken & proud"
    assert first.title == "AT&T and Acme sign a deal"
    assert first.text == "Q&A with the CEO today. Café talk."
    assert first.url == "https://broken.example.com/p?id=1"  # ref= is tracking
    assert second.title == "Second post"
    assert "&" in feed.warning


def test_ampersands_inside_cdata_are_left_alone():
    body = rss(
        "<item><title>ok</title><description><![CDATA[<p>Fish &amp; chips &nbsp;& co</p>]]>"
        "</description></item>"
    ).encode()
    feed = parse_feed(body, source="t", url=FEED_URL)
    assert feed.warning is None
    assert feed.items[0].text == "Fish & chips & co"


def test_php_warning_before_the_xml_is_skipped():
    body = (
        b"<br />\n<b>Warning</b>: something in x.php on line 3<br />\n"
        + rss("<item><title>still here</title></item>").encode()
    )
    assert parse_feed(body, source="t", url=FEED_URL).items[0].title == "still here"


# ---------------------------------------------------------------------------------- charsets


ITEM = "<item><title>Café “Acme” – déjà vu</title><link>https://ex.com/a</link></item>"
EXPECTED = "Café “Acme” – déjà vu"


def test_utf8_without_any_charset_label():
    feed = parse_feed(rss(ITEM, decl="").encode("utf-8"), source="t", url=FEED_URL)
    assert feed.items[0].title == EXPECTED
    assert feed.parser == "fastfeedparser"


def test_declared_windows_1252():
    body = rss(ITEM, decl='<?xml version="1.0" encoding="windows-1252"?>').encode("cp1252")
    assert parse_feed(body, source="t", url=FEED_URL).items[0].title == EXPECTED


def test_latin1_bytes_declared_utf8():
    body = rss(ITEM).encode("cp1252")
    feed = parse_feed(
        body, source="t", url=FEED_URL, content_type="application/rss+xml; charset=utf-8"
    )
    assert feed.items[0].title == EXPECTED
    assert feed.parser == "feedparser"


def test_latin1_bytes_with_no_label():
    body = rss(ITEM, decl="").encode("cp1252")
    assert parse_feed(body, source="t", url=FEED_URL).items[0].title == EXPECTED


def test_utf8_bytes_declared_latin1():
    body = rss(ITEM, decl='<?xml version="1.0" encoding="iso-8859-1"?>').encode("utf-8")
    assert parse_feed(body, source="t", url=FEED_URL).items[0].title == EXPECTED


def test_http_charset_overrides_the_declaration():
    body = rss(ITEM, decl='<?xml version="1.0" encoding="utf-8"?>').encode("cp1252")
    feed = parse_feed(body, source="t", url=FEED_URL, content_type="text/xml; charset=windows-1252")
    assert feed.items[0].title == EXPECTED


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-32"])
def test_utf16_and_utf32(codec):
    body = rss(ITEM, decl=f'<?xml version="1.0" encoding="{codec}"?>').encode(codec)
    assert parse_feed(body, source="t", url=FEED_URL).items[0].title == EXPECTED


def test_bogus_charset_label_does_not_crash():
    body = rss(ITEM, decl='<?xml version="1.0" encoding="no-such-charset"?>').encode("utf-8")
    feed = parse_feed(body, source="t", url=FEED_URL, content_type="text/xml; charset=bogus")
    assert feed.items[0].title.startswith("Caf")


# ------------------------------------------------------------------------- parser agreement


@pytest.mark.parametrize(
    "name",
    [
        "rss2_content_wfw.xml",
        "atom10_threads.xml",
        "atom03.xml",
        "wp_comments.xml",
        "reddit.atom",
        "google_alerts.atom",
    ],
)
def test_fast_and_reference_parsers_give_the_same_items(name):
    # The fixtures are ASCII, so declaring Windows-1252 changes nothing but the parser used.
    fast = parse(name)
    reference = parse(name, content_type="application/xml; charset=windows-1252")
    assert (fast.parser, reference.parser) == ("fastfeedparser", "feedparser")
    assert fast.title == reference.title
    assert fast.items == reference.items


@pytest.mark.parametrize("content_type", ["", "text/xml; charset=windows-1252"])
def test_character_references_to_no_character_do_not_crash(content_type):
    body = rss(
        "<item><title>a&#99999999;b&#x110000;c&#xD800;d&#1;e&#X41;</title>"
        "<link>https://ex.com/1</link></item>"
    ).encode()
    (item,) = parse_feed(body, source="t", url=FEED_URL, content_type=content_type).items
    assert item.title == "abcdeA"


def test_when_feedparser_crashes_the_fast_parser_entries_are_kept():
    # A stray <textinput> inside an item raises KeyError in feedparser 6.
    items = "<item><title>Café</title><link>https://ex.com/1</link><textinput><name>q</name></item>"
    body = rss(items, decl='<?xml version="1.0" encoding="iso-8859-1"?>').encode("latin-1")
    feed = parse_feed(body, source="t", url=FEED_URL)
    assert [i.title for i in feed.items] == ["Café"]
    assert "feedparser failed" in feed.warning
    cdf = b'<?xml version="1.0"?><CHANNEL><ITEM><textinput><name>q</name></ITEM></CHANNEL>'
    with pytest.raises(NotAFeed, match="unreadable feed"):
        parse_feed(cdf.replace(b"ITEM", b"item"), source="t", url=FEED_URL)


def test_a_long_comment_before_the_root_is_stepped_over():
    comment = "<!-- " + "generated by <b>CMS</b> " * 600 + "-->"  # 14 KB, with tags inside
    body = '<?xml version="1.0"?>' + comment + rss("<item><title>found</title></item>", decl="")
    assert parse_feed(body.encode(), source="t", url=FEED_URL).items[0].title == "found"


# ------------------------------------------------------------------- threads from forum feeds


def _posts(*entries: tuple[str, str, str]) -> bytes:
    """An RSS feed of forum posts: (title, link, body) each."""
    return rss(
        "".join(
            f"<item><title>{t}</title><link>{link}</link><guid>{link}</guid>"
            f"<description>{body}</description></item>"
            for t, link, body in entries
        )
    ).encode()


def test_a_discourse_forum_read_as_a_plain_feed_groups_posts_into_topics():
    body = _posts(
        ("Acme skates broke", "https://forum.example.com/t/acme-skates-broke/881/1", "Broke."),
        ("Acme skates broke", "https://forum.example.com/t/acme-skates-broke/881/2", "Me too."),
        ("Acme skates broke", "https://forum.example.com/t/acme-skates-broke/881/3", "Same."),
        ("Acme is great", "https://forum.example.com/t/acme-is-great/900", "Love it."),
    )
    items = parse_feed(body, source="forum", url=FEED_URL).items
    assert [i.thread_key for i in items] == ["discourse:forum.example.com:881"] * 3 + [
        "discourse:forum.example.com:900"
    ]
    assert [i.is_reply for i in items] == [False, True, True, False]
    assert items[1].parent_key == "discourse:forum.example.com:881"
    # Each post stays its own item.
    assert len({i.url for i in items}) == 4


def test_phpbb_posts_known_only_by_post_id_join_the_topic_the_feed_names_for_them():
    bb = "https://bb.example.com/viewtopic.php"
    body = rss(
        f"<item><title>Support • Acme skates broke</title><link>{bb}?t=42&amp;p=100#p100</link>"
        "<description>a</description></item>"
        # Linked by post id only; its guid names the topic. Titled like the topic, not "Re:".
        f"<item><title>Support • Acme skates broke</title><link>{bb}?p=101#p101</link>"
        f'<guid isPermaLink="false">{bb}?t=42&amp;p=101</guid><description>b</description></item>'
        # Linked by post id only; another entry names its topic.
        f"<item><title>Support • Acme skates, again</title><link>{bb}?p=102#p102</link>"
        "<description>c</description></item>"
        f"<item><title>Support • Acme skates, again</title><link>{bb}?t=42&amp;p=102</link>"
        "<description>c</description></item>"
        f"<item><title>Support • Other topic</title><link>{bb}?p=200#p200</link>"
        "<description>d</description></item>"
    ).encode()
    items = parse_feed(body, source="bb", url=FEED_URL).items
    topic = "bb.example.com/viewtopic.php?t=42"
    assert [i.thread_key for i in items[:4]] == [topic] * 4
    assert items[4].thread_key == "bb.example.com/viewtopic.php?p=200"
    assert items[1].is_reply and items[2].is_reply


def test_re_titled_replies_join_their_topic_when_the_feed_gives_nothing_better():
    body = _posts(
        ("Acme skates broke", "https://old.example.com/msg/1", "Root."),
        ("Re: Acme skates broke", "https://old.example.com/msg/2", "Me too."),
        ("RE: re: acme skates broke!", "https://old.example.com/msg/3", "Same."),
        ("Re: Something else", "https://old.example.com/msg/4", "Alone."),
    )
    items = parse_feed(body, source="list", url=FEED_URL).items
    root = items[0].thread_key
    assert root == "old.example.com/msg/1"
    assert [i.thread_key for i in items[:3]] == [root] * 3
    assert items[1].is_reply and items[1].parent_key == root
    # A lone reply whose topic is not in the feed keeps its own thread.
    assert items[3].thread_key == "old.example.com/msg/4"


def test_re_titled_replies_without_their_topic_in_the_feed_share_one_thread():
    body = _posts(
        ("Re: Acme skates broke", "https://old.example.com/msg/2", "Me too."),
        ("Re: Acme skates broke", "https://old.example.com/msg/3", "Same."),
    )
    items = parse_feed(body, source="list", url=FEED_URL).items
    assert items[0].thread_key == items[1].thread_key == "list:re:acme skates broke"


def test_re_titled_entries_keep_the_thread_their_markup_gives():
    body = _posts(
        ("Acme skates broke", "https://forum.example.com/t/acme-skates-broke/881", "Root."),
        ("Re: Acme skates broke", "https://forum.example.com/t/other-topic/900/2", "Else."),
    )
    items = parse_feed(body, source="forum", url=FEED_URL).items
    assert items[1].thread_key == "discourse:forum.example.com:900"


def test_re_titled_comments_stay_in_the_topics_their_anchors_name():
    # Two topics whose comments are all titled "Re: kettle": each comment's `#comment-N` anchor
    # already names its conversation, so they are not gathered into one "Re: kettle" thread.
    body = _posts(
        ("Kettle question one", "https://forum.example.com/t/one", "Root one."),
        ("Re: kettle", "https://forum.example.com/t/one#comment-1", "Reply one."),
        ("Kettle question two", "https://forum.example.com/t/two", "Root two."),
        ("Re: kettle", "https://forum.example.com/t/two#comment-1", "Reply two."),
    )
    items = parse_feed(body, source="forum", url=FEED_URL).items
    assert [i.thread_key for i in items] == [
        "forum.example.com/t/one",
        "forum.example.com/t/one",
        "forum.example.com/t/two",
        "forum.example.com/t/two",
    ]
