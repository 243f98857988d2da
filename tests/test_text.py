"""Text helpers: what a mention looks like after normalisation, and which URLs count as one page."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from listener.text import (
    MAX_HTML_CHARS,
    canonical_url,
    content_fingerprint,
    content_hash,
    html_to_text,
    is_comment_url,
    normalise_text,
    parse_datetime,
    split_sentences,
    thread_key_for_url,
    url_identity,
    url_keys,
)

# --------------------------------------------------------------------------------- html_to_text


def test_scripts_styles_noscript_and_templates_disappear_with_their_content():
    html = (
        "<style>p { color: red }</style><p>Acme skates are great.</p>"
        "<script>trackPageView('acme');</script><noscript>Enable JS</noscript>"
        "<template><p>hidden</p></template><p>Really.</p>"
    )
    assert html_to_text(html) == "Acme skates are great.\nReally."


def test_entities_named_and_numeric_are_decoded():
    assert html_to_text("<p>AT&amp;T &eacute;t&#233; &#x41;&#65; &hellip; &nbsp;x</p>") == (
        "AT&T été AA … x"
    )
    # Entities without any markup take the no-parse path and decode the same way.
    assert html_to_text("Tom &amp; Jerry&nbsp;&#8230;") == "Tom & Jerry …"


def test_block_elements_become_line_breaks_and_inline_elements_do_not_split_words():
    html = (
        "<h2>Review</h2><p>The brakes <b>failed</b> twice.\n   I ended up in a canyon.</p>"
        "<ul><li>Speed: 10/10</li><li>Safety: 2/10</li></ul>Bye<br>now"
        "<table><tr><td>a</td><td>b</td></tr></table>Hel<em>lo</em>"
    )
    assert html_to_text(html) == (
        "Review\nThe brakes failed twice. I ended up in a canyon.\n"
        "Speed: 10/10\nSafety: 2/10\nBye\nnow\na b\nHello"
    )


def test_markup_that_needs_a_real_parser_gives_the_same_text():
    # A comment, a Word processing instruction and a script force the lexbor path.
    html = (
        '<?xml:namespace prefix = o ns = "urn:schemas-microsoft-com:office:office" />'
        "<!-- SC_OFF --><div><p>Same <b>text</b>.</p></div><script>x()</script><p>Two.</p>"
    )
    assert html_to_text(html) == "Same text.\nTwo."
    assert html_to_text("<div><p>Same <b>text</b>.</p></div><p>Two.</p>") == "Same text.\nTwo."


def test_a_full_page_gives_its_body_not_its_head():
    page = "<html><head><title>Sign in</title></head><body><p>Welcome</p></body></html>"
    assert html_to_text(page) == "Welcome"


def test_unicode_is_nfc_and_invisible_characters_are_removed():
    decomposed = "Cafe\u0301 Acme\u200b Rocket\u00ad\x00Skates\ufeff"
    assert html_to_text(f"<p>{decomposed}</p>") == "Café Acme RocketSkates"
    assert normalise_text(decomposed) == "Café Acme RocketSkates"


def test_windows_1252_and_double_encoded_utf8_are_repaired():
    assert html_to_text("<p>don&#146;t</p>") == "don’t"  # cp1252 byte given as a C1 character
    assert html_to_text("&#226;&#128;&#166;") == "…"  # UTF-8 bytes read as Latin-1


def test_huge_input_is_capped_not_parsed_whole():
    text = html_to_text("<p>" + "word " * (MAX_HTML_CHARS // 2) + "</p>")
    assert 0 < len(text) <= MAX_HTML_CHARS


def test_empty_and_plain_inputs():
    assert html_to_text("") == ""
    assert html_to_text("   plain   text\n\n\nnext  ") == "plain text\nnext"
    assert html_to_text("1 < 2 and 3 > 2") == "1 < 2 and 3 > 2"


def test_normalise_text_collapses_spaces_and_keeps_single_line_breaks():
    assert normalise_text("  a \t b\u00a0\u00a0c \r\n\n\n d  ") == "a b c\nd"
    assert normalise_text("bell\x07 and\x1b escape") == "bell and escape"


# -------------------------------------------------------------------------------- canonical_url


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        # tracking parameters go, the rest is sorted
        (
            "https://blog.example.com/post?utm_source=rss&b=2&a=1&fbclid=X&gclid=Y&ref=home",
            "https://blog.example.com/post?a=1&b=2",
        ),
        (
            "https://ex.com/p?mc_cid=1&mc_eid=2&igshid=3&_hsenc=4&_hsmi=5&msclkid=6",
            "https://ex.com/p",
        ),
        ("https://ex.com/p?UTM_Medium=x&id=7", "https://ex.com/p?id=7"),
        # case of scheme and host, not of path
        ("HTTPS://WWW.Example.COM/Some/Path", "https://www.example.com/Some/Path"),
        # default ports dropped, others kept
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        # fragments dropped
        ("https://ex.com/post#comments", "https://ex.com/post"),
        # trailing slash removed, root kept
        ("https://ex.com/post/", "https://ex.com/post"),
        ("https://ex.com", "https://ex.com/"),
        ("https://ex.com/?utm_source=x", "https://ex.com/"),
        # one spelling of percent-escapes and non-ASCII
        ("https://ex.com/%7ebob/caf%c3%a9", "https://ex.com/~bob/caf%C3%A9"),
        ("https://ex.com/café", "https://ex.com/caf%C3%A9"),
        ("https://bücher.example/", "https://xn--bcher-kva.example/"),
        # http is not upgraded in the URL itself
        ("http://ex.com/a", "http://ex.com/a"),
    ],
)
def test_canonical_url(raw, canonical):
    assert canonical_url(raw) == canonical


def test_relative_urls_resolve_against_base():
    base = "https://blog.example.com/feed/"
    assert canonical_url("/2024/05/post/?utm_campaign=x", base) == (
        "https://blog.example.com/2024/05/post"
    )
    assert canonical_url("post.html", base) == "https://blog.example.com/feed/post.html"


def test_google_and_other_redirect_links_are_unwrapped():
    alert = (
        "https://www.google.com/url?rct=j&sa=t&url=https://news.example.org/story%3Fid%3D7"
        "%26utm_source%3Dgoogle&ct=ga&cd=CAIyGjk0&usg=AOvVaw0abc"
    )
    assert canonical_url(alert) == "https://news.example.org/story?id=7"
    assert canonical_url("https://www.google.co.uk/url?q=http://x.example/y/&sa=D") == (
        "http://x.example/y"
    )
    assert canonical_url("https://l.facebook.com/l.php?u=https%3A%2F%2Fex.com%2Fa&h=AT0") == (
        "https://ex.com/a"
    )
    # feedproxy links only resolve with a request: left as they are.
    assert canonical_url("http://feedproxy.google.com/~r/Blog/~3/abc/") == (
        "http://feedproxy.google.com/~r/Blog/~3/abc"
    )


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "   ",
        "not a url",
        "mailto:pr@acme.example",
        "tag:acme.example,2024:1",
        "http://[::1",
        "http://ex.com:notaport/",
        "//ex.com/x",
        "javascript:alert(1)",
    ],
)
def test_junk_never_raises_and_comes_back_stripped(junk):
    assert canonical_url(f"  {junk}  ") == junk.strip()
    assert isinstance(url_identity(junk), str)
    assert isinstance(thread_key_for_url(junk), str)


def test_url_identity_makes_http_https_and_www_variants_collide():
    variants = [
        "http://www.example.com/story/",
        "https://example.com/story",
        "https://WWW.example.com/story?utm_source=twitter#top",
    ]
    assert {url_identity(u) for u in variants} == {"example.com/story"}
    assert url_identity("https://example.com/other") != url_identity(variants[0])


# ---------------------------------------------------------------------------------- thread keys


@pytest.mark.parametrize(
    ("url", "thread", "comment"),
    [
        ("https://blog.example.com/post/#comment-12", "blog.example.com/post", True),
        ("https://blog.example.com/post#c12", "blog.example.com/post", True),
        ("https://blog.example.com/post#comment12", "blog.example.com/post", True),
        ("https://blog.example.com/post/?replytocom=12", "blog.example.com/post", True),
        ("https://www.blog.example.com/post/?utm_source=x", "blog.example.com/post", False),
        (
            "https://www.reddit.com/r/acme/comments/1e8xk2q/skates_caught_fire/",
            "reddit:1e8xk2q",
            False,
        ),
        ("https://old.reddit.com/r/acme/comments/1E8XK2Q/x/lf2abcd/", "reddit:1e8xk2q", True),
        ("https://redd.it/1e8xk2q", "reddit:1e8xk2q", False),
        ("https://news.ycombinator.com/item?id=4242", "hn:4242", False),
    ],
)
def test_thread_keys(url, thread, comment):
    assert thread_key_for_url(url) == thread
    assert is_comment_url(url) is comment
    keys = url_keys(url)
    assert (keys.thread_key, keys.is_comment) == (thread, comment)
    assert keys.canonical == canonical_url(url)
    assert keys.identity == url_identity(url)


@pytest.mark.parametrize(
    ("urls", "thread"),
    [
        (  # Discourse: a topic, its posts, a short link: the key `kind: discourse` gives it
            [
                "https://forum.example.com/t/acme-skates-broke/881",
                "https://forum.example.com/t/acme-skates-broke/881/1",
                "https://forum.example.com/t/acme-skates-broke/881/2?u=rosa",
                "https://forum.example.com/t/881/3",
            ],
            "discourse:forum.example.com:881",
        ),
        (  # phpBB: the topic, a post in it (with its anchor), a page of it
            [
                "https://bb.example.com/forum/viewtopic.php?t=42",
                "https://bb.example.com/forum/viewtopic.php?f=3&t=42&p=1001#p1001",
                "https://bb.example.com/forum/viewtopic.php?t=42&start=20",
            ],
            "bb.example.com/forum/viewtopic.php?t=42",
        ),
        (  # XenForo
            [
                "https://xf.example.com/threads/acme-skates.123/",
                "https://xf.example.com/threads/acme-skates.123/post-456",
                "https://xf.example.com/threads/acme-skates.123/page-2",
                "https://xf.example.com/threads/acme-skates.123/#post-457",
            ],
            "xf.example.com/threads/123",
        ),
        (  # vBulletin: showthread.php (3 and 4) and friendly URLs
            [
                "https://vb.example.com/showthread.php?t=77",
                "https://vb.example.com/showthread.php?t=77&p=900#post900",
                "https://vb.example.com/showthread.php?77-Acme-skates",
            ],
            "vb.example.com/showthread.php?t=77",
        ),
        (
            [
                "https://vb5.example.com/threads/77-acme-skates",
                "https://vb5.example.com/threads/77-acme-skates/page2",
            ],
            "vb5.example.com/threads/77",
        ),
        (  # Invision
            [
                "https://ips.example.com/topic/55-acme-skates/",
                "https://ips.example.com/topic/55-acme-skates/page/2/",
                "https://ips.example.com/topic/55-acme-skates/?do=findComment&comment=9",
                "https://ips.example.com/topic/55-acme-skates/#comment-10",
            ],
            "ips.example.com/topic/55",
        ),
        (  # Flarum
            [
                "https://flarum.example.com/d/12-acme-skates",
                "https://flarum.example.com/d/12-acme-skates/3",
                "https://flarum.example.com/d/12/4",
            ],
            "flarum.example.com/d/12",
        ),
        (  # Blogger comments
            [
                "https://acme-fans.blogspot.com/2024/05/skates.html",
                "https://acme-fans.blogspot.com/2024/05/skates.html?showComment=1715000000#c123",
            ],
            "acme-fans.blogspot.com/2024/05/skates.html",
        ),
        (  # Stack Exchange: a question and its answers
            [
                "https://stackoverflow.com/questions/123/acme-skates-brake",
                "https://stackoverflow.com/questions/123/acme-skates-brake/456#456",
                "https://stackoverflow.com/q/123",
            ],
            "stackexchange:stackoverflow:123",
        ),
        (
            ["https://unix.stackexchange.com/questions/9/why/10#10"],
            "stackexchange:unix:9",
        ),
        (  # GitHub: an issue and its comments
            [
                "https://github.com/Acme/Skates/issues/7",
                "https://github.com/acme/skates/issues/7#issuecomment-1234",
            ],
            "github:acme/skates#7",
        ),
    ],
)
def test_forum_topics_and_their_posts_share_one_thread(urls, thread):
    assert [thread_key_for_url(u) for u in urls] == [thread] * len(urls)


@pytest.mark.parametrize(
    "url",
    [
        "https://forum.example.com/t/acme-skates-broke/881/2",
        "https://bb.example.com/viewtopic.php?t=42&p=1001",
        "https://xf.example.com/threads/acme-skates.123/post-456",
        "https://stackoverflow.com/questions/123/acme/456",
        "https://github.com/acme/skates/issues/7#issuecomment-1234",
        "https://flarum.example.com/d/12-acme-skates/3",
        "https://blog.example.com/p?showComment=1715000000",
    ],
)
def test_posts_within_a_topic_are_replies(url):
    assert is_comment_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://forum.example.com/t/acme-skates-broke/881",
        "https://bb.example.com/viewtopic.php?t=42",
        "https://xf.example.com/threads/acme-skates.123/",
        "https://stackoverflow.com/questions/123/acme",
        "https://github.com/acme/skates/issues/7",
    ],
)
def test_a_topic_itself_is_not_a_reply(url):
    assert not is_comment_url(url)


def test_urls_that_only_look_like_forums_keep_their_own_thread():
    for url in (
        "https://shop.example.com/t/shirts",  # no topic id
        "https://blog.example.com/threads/of-yarn",
        "https://github.com/acme/skates/blob/main/README.md",
        "https://stackoverflow.com/users/12/rosa",
    ):
        assert thread_key_for_url(url) == url_identity(url)


def test_comments_of_a_post_share_its_thread():
    post = "https://blog.example.com/2024/05/acme/?utm_source=rss"
    comments = [
        "http://blog.example.com/2024/05/acme/#comment-1",
        "https://www.blog.example.com/2024/05/acme?replytocom=1",
    ]
    assert {thread_key_for_url(u) for u in comments} == {thread_key_for_url(post)}


# --------------------------------------------------------------------------------- fingerprints


def test_syndicated_copies_get_one_fingerprint():
    original = content_fingerprint(
        "Acme recalls 10,000 rocket skates",
        "The Acme Corporation said on Monday it would recall rocket skates after brake failures.",
    )
    copy = content_fingerprint(
        "ACME recalls 10.000 Rocket Skates!",
        "  The ACME   Corporation said, on Monday, it would recall\nrocket skates after brake "
        "failures\u2026",
    )
    assert original == copy
    long_text = "Acme brakes failed again, riders say. " * 30
    assert content_fingerprint("Recall", long_text) == content_fingerprint(
        "Recall", long_text + "\nThis story first appeared on Example Wire."
    )


def test_different_stories_get_different_fingerprints():
    a = content_fingerprint("Acme recalls rocket skates", "Brake failures reported.")
    b = content_fingerprint("Acme opens a new factory", "The plant will employ 300 people.")
    c = content_fingerprint("Acme recalls rocket skates", "A different story under one title.")
    assert len({a, b, c}) == 3


def test_content_hash_sees_every_edit():
    assert content_hash("t", "Acme is fine.") == content_hash("t", "Acme is fine.")
    assert content_hash("t", "Acme is fine.") != content_hash("t", "Acme is fine!")
    assert content_hash("ab", "c") != content_hash("a", "bc")


# ------------------------------------------------------------------------------------ sentences


def _sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in split_sentences(text)]


def test_split_sentences():
    text = (
        "Mr. Smith bought Acme skates, e.g. the 2.5 model at acme.example.com/shop. "
        "They broke?! Yes.\nNew paragraph without a period\n\nJ. R. R. Tolkien liked them… "
        "so did I"
    )
    assert _sentences(text) == [
        "Mr. Smith bought Acme skates, e.g. the 2.5 model at acme.example.com/shop.",
        "They broke?!",
        "Yes.",
        "New paragraph without a period",
        "J. R. R. Tolkien liked them…",
        "so did I",
    ]


def test_split_sentences_edge_cases():
    assert split_sentences("") == []
    assert split_sentences("   \n ") == []
    assert _sentences("One sentence") == ["One sentence"]
    assert _sentences('He said "stop." Then left.') == ['He said "stop."', "Then left."]


# ---------------------------------------------------------------------------------------- dates

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Tue, 14 May 2024 09:30:00 +0200", datetime(2024, 5, 14, 7, 30, tzinfo=UTC)),
        ("Mon, 13 May 2024 18:00:00 GMT", datetime(2024, 5, 13, 18, 0, tzinfo=UTC)),
        ("2024-05-01T08:00:00-05:00", datetime(2024, 5, 1, 13, 0, tzinfo=UTC)),
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, 0, tzinfo=UTC)),
        ("2024-05-01 10:00:00 +0000", datetime(2024, 5, 1, 10, 0, tzinfo=UTC)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        (time.gmtime(1714557600), datetime(2024, 5, 1, 10, 0, tzinfo=UTC)),
        (datetime(2024, 5, 1, 10, 0), datetime(2024, 5, 1, 10, 0, tzinfo=UTC)),
        (
            datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))),
            datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
        ),
    ],
)
def test_feed_dates_become_aware_utc(value, expected):
    parsed = parse_datetime(value, now=NOW)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        "2024-06-03T12:00:00Z",  # two days ahead of NOW: a clock error
        "Sat, 01 Jan 1994 00:00:00 GMT",  # before the web had feeds
        "0000-00-00 00:00:00",
        "yesterday-ish",
        "",
        None,
        ["2024-05-01"],
    ],
)
def test_implausible_or_unreadable_dates_are_unknown(value):
    assert parse_datetime(value, now=NOW) is None


def test_a_date_a_few_hours_ahead_is_kept():
    # Feeds with a wrong time zone are common; less than a day ahead is believed.
    assert parse_datetime("2024-06-01T20:00:00Z", now=NOW) == datetime(2024, 6, 1, 20, tzinfo=UTC)
