"""Pure text helpers that run once per item: HTML to text, canonical URLs, thread keys, hashes, dates.

Everything here is a plain function over strings, never raises on junk input from the web, and is
cheap enough for the per-entry hot path (selectolax/lexbor for HTML, a few compiled regexes and
`urllib.parse` for the rest).
"""

from __future__ import annotations

import calendar
import contextlib
import hashlib
import html
import logging
import re
import time
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import parse_qsl, quote, unquote, urljoin, urlsplit, urlunsplit

from feedparser.datetimes import _parse_date as _feedparser_date
from selectolax.lexbor import LexborHTMLParser

log = logging.getLogger(__name__)

# Larger inputs are cut before parsing: no real post is a megabyte of text, and the parse cost and
# memory grow with the input.
MAX_HTML_CHARS = 1_000_000

# ---------------------------------------------------------------------------------------------
# Whitespace, control characters, Unicode
# ---------------------------------------------------------------------------------------------

# Characters that are invisible but break word matching: C0 controls other than tab/newline/CR,
# DEL, soft hyphen, zero-width space, bidi marks and isolates, word joiner, BOM, and lone
# surrogates (from "&#xD800;"), which cannot even be encoded.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1d\x1f\x7f\u00ad\u200b\u200e\u200f\u2060\ufeff\u202a-\u202e"
    "\u2066-\u2069\ud800-\udfff]"
)
# \x1e stays: html_to_text uses it to mark line breaks until the very end.
_ASCII_CONTROLS = bytes([*range(0, 9), 11, 12, *range(14, 30), 31, 127])
_C1 = re.compile("[\x80-\x9f]")
# C1 control characters in text are Windows-1252 bytes that were decoded as Latin-1 ("&#146;"
# for a curly apostrophe): map them back to the characters they meant.
_CP1252_C1 = {c: bytes([c]).decode("cp1252", "ignore") or None for c in range(0x80, 0xA0)}


def _fix_c1(s: str) -> str:
    """Repair text with C1 controls: UTF-8 read as Latin-1, else Windows-1252 read as Latin-1."""
    try:
        return s.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return s.translate(_CP1252_C1)


def _fix_mojibake(s: str) -> str:
    """Undo UTF-8 that was decoded as Windows-1252 ("â€™" for "’", "Ã©" for "é").

    Only when the whole text round-trips strictly: real text with a lone "Ã" or "â" (Portuguese,
    Vietnamese, French) fails the round trip and is left alone.
    """
    try:
        return s.encode("cp1252").decode("utf-8")
    except UnicodeError:
        return s


def _clean_chars(s: str) -> str:
    """NFC, mojibake repaired (C1 controls, UTF-8 read as Windows-1252), invisible chars removed."""
    if s.isascii():
        if not s.isprintable():  # newlines, tabs or control characters: drop only the controls
            s = s.encode("ascii").translate(None, _ASCII_CONTROLS).decode("ascii")
        return s
    if _C1.search(s):
        s = _fix_c1(s)
    if "â€" in s or "Ã" in s or "Â" in s:
        s = _fix_mojibake(s)
    s = unicodedata.normalize("NFC", s)
    return _INVISIBLE.sub("", s)


def _collapse_lines(s: str, sep: str = "\n") -> str:
    """Whitespace runs inside a line become one space; empty lines go; lines are split on `sep`.

    str.split() is C code and knows every Unicode space (NBSP included), unlike a regex pass.
    """
    if sep not in s:
        return " ".join(s.split())
    lines = (" ".join(line.split()) for line in s.split(sep))
    return "\n".join(line for line in lines if line)


def normalise_text(s: str) -> str:
    """NFC, control and invisible characters removed, whitespace collapsed (line breaks kept).

    Windows-1252 characters given as C1 controls and UTF-8 read as Latin-1 are repaired first.
    """
    if not s:
        return ""
    return _collapse_lines(_clean_chars(s))


# ---------------------------------------------------------------------------------------------
# HTML to text
# ---------------------------------------------------------------------------------------------

_DROP_TAGS = ["script", "style", "noscript", "template", "iframe", "svg", "math"]
# Markup that needs a real HTML parser: elements whose content is not text (scripts, styles, ...),
# raw-text elements, comments, CDATA, declarations and processing instructions (MS Word's
# "<?xml:namespace ...>"). Everything else is tags around text, which one regex pass strips exactly
# as lexbor would, at a fraction of its ~50 us fixed cost per document.
_NEEDS_PARSER = re.compile(
    r"<(?:[!?]|(?:script|style|noscript|template|iframe|svg|math|textarea|title|xmp"
    r"|plaintext|select|head)\b)",
    re.IGNORECASE,
)
# fmt: off
_BLOCKS = frozenset({
    "p", "div", "br", "hr", "li", "ul", "ol", "dl", "dt", "dd", "h1", "h2", "h3", "h4", "h5",
    "h6", "tr", "table", "thead", "tbody", "tfoot", "blockquote", "pre", "section", "article",
    "aside", "header", "footer", "figure", "figcaption", "nav", "main", "address", "details",
    "summary", "form", "fieldset", "caption", "center"
})
# fmt: on
_CELLS = frozenset({"td", "th"})
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)[^>]*>")
# Elements that end a line when rendered. A separator is put before each of them so the break
# survives text extraction, where the HTML's own newlines are only spaces. \x1e (record
# separator) is ASCII, so the text stays on the fast ASCII path of _clean_chars.
_BLOCK_TAG = re.compile(
    r"<(?=/?(?:p|div|br|hr|li|ul|ol|dl|dt|dd|h[1-6]|tr|table|thead|tbody|tfoot|blockquote|pre"
    r"|section|article|aside|header|footer|figure|figcaption|nav|main|address|details|summary"
    r"|form|fieldset|caption|center)\b)",
    re.IGNORECASE,
)
_CELL_TAG = re.compile(r"<(?=/?t[dh]\b)", re.IGNORECASE)
_SEP = "\x1e"


def _tag_to_text(m: re.Match[str]) -> str:
    name = m.group(2).lower()
    if name in _BLOCKS:
        return _SEP
    return " " if name in _CELLS else ""


def _parsed_text(markup: str) -> str:
    """Text of markup that needs a real parser (lexbor), with separators at block elements."""
    markup = _BLOCK_TAG.sub(_SEP + "<", markup)
    if "<t" in markup or "<T" in markup:
        markup = _CELL_TAG.sub(" <", markup)
    tree = LexborHTMLParser(markup)
    tree.strip_tags(_DROP_TAGS)
    # A page's <head> holds its <title> and metadata, which are not the post's text.
    node = tree.body if tree.body is not None else tree.root
    return node.text(deep=True) if node is not None else ""


def html_to_text(markup: str) -> str:
    """Plain text of an HTML fragment or page, ready for matching and scoring.

    Scripts, styles, noscript and templates are dropped with their content; entities are decoded;
    block elements (paragraphs, list items, headings, line breaks, ...) become line breaks so that
    sentences from two paragraphs never run together; whitespace is collapsed and the result is NFC.
    """
    if not markup:
        return ""
    if len(markup) > MAX_HTML_CHARS:
        markup = markup[:MAX_HTML_CHARS]
    if "<" not in markup:
        # Plain text, perhaps with entities: no parse needed.
        return normalise_text(html.unescape(markup) if "&" in markup else markup)
    if _SEP in markup:
        markup = markup.replace(_SEP, " ")
    if _NEEDS_PARSER.search(markup):
        text = _parsed_text(markup)
    else:
        text = _TAG.sub(_tag_to_text, markup)
        if "&" in text:
            text = html.unescape(text)
    if not text:
        return ""
    # The HTML's own line breaks are only spaces; the separators are the real breaks.
    return _collapse_lines(_clean_chars(text), _SEP)


# ---------------------------------------------------------------------------------------------
# URLs
# ---------------------------------------------------------------------------------------------

# Query parameters that identify a campaign, a click or a share, never the page itself.
# fmt: off
TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "msclkid", "mc_cid", "mc_eid",
    "igshid", "igsh", "ref", "ref_src", "ref_url", "_hsenc", "_hsmi", "__hstc", "__hssc",
    "__hsfp", "hsctatrack", "yclid", "spm", "cmpid", "s_cid", "mkt_tok", "oly_anon_id",
    "oly_enc_id", "rb_clickid", "vero_id", "vero_conv", "wt.mc_id", "wt.mc_ev", "icid", "ncid",
    "sr_share", "at_medium", "at_campaign", "at_custom1", "xtor", "_ga", "_gl", "trk",
    "trkcampaign", "ttclid", "twclid", "li_fat_id", "epik",
    "replytocom",  # WordPress "reply" button: the same post page
})
# fmt: on
_TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "hmb_", "ga_", "fb_action_", "fb_ref", "fb_source")

# Redirectors whose target is a query parameter, so they can be unwrapped without a request.
# host suffix -> (path, parameter names in order of preference)
_REDIRECTORS: dict[str, tuple[str, tuple[str, ...]]] = {
    "l.facebook.com": ("/l.php", ("u",)),
    "lm.facebook.com": ("/l.php", ("u",)),
    "l.instagram.com": ("/", ("u",)),
    "out.reddit.com": ("", ("url",)),
    "youtube.com": ("/redirect", ("q",)),
    "slack-redir.net": ("/link", ("url",)),
    "t.umblr.com": ("/redirect", ("z",)),
    "linkedin.com": ("/redir/redirect", ("url",)),
    "safelinks.protection.outlook.com": ("", ("url",)),
    "duckduckgo.com": ("/l/", ("uddg",)),
    "steamcommunity.com": ("/linkfilter/", ("url", "u")),
    "href.li": ("", ()),
}
_GOOGLE_HOST = re.compile(r"^(?:www\.)?google\.(?:com|[a-z]{2,3}|co\.[a-z]{2}|com\.[a-z]{2})$")
_PCT = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# What `quote` leaves alone when it percent-encodes non-ASCII characters (as browsers do).
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


def _fix_pct(match: re.Match[str]) -> str:
    # %7e and %7E and ~ are one URL: decode unreserved characters, upper-case the rest.
    char = chr(int(match.group(0)[1:], 16))
    return char if char in _UNRESERVED else match.group(0).upper()


def _is_tracking(key: str) -> bool:
    key = key.lower()
    return key in TRACKING_PARAMS or key.startswith(_TRACKING_PREFIXES)


def _redirect_target(host: str, path: str, query: str) -> str | None:
    """The real URL behind a known redirector link, or None."""
    if path == "/url" and _GOOGLE_HOST.match(host):
        names: tuple[str, ...] = ("url", "q")
    else:
        # The host and its parent domains, looked up directly (no scan over the table).
        rule = None
        suffix = host
        while rule is None and suffix:
            rule = _REDIRECTORS.get(suffix)
            suffix = suffix.partition(".")[2]
        if rule is None:
            return None
        want_path, names = rule
        if want_path and path.rstrip("/") != want_path.rstrip("/"):
            return None
        if not names:  # href.li/?https://target
            return unquote(query) if query.startswith(("http://", "https://")) else None
    values = dict(parse_qsl(query, keep_blank_values=True))
    for name in names:
        target = values.get(name, "").strip()
        if target.startswith(("http://", "https://")):
            return target
    return None


_Parts = tuple[str, str, str, str, str]


def _split(url: str) -> _Parts | None:
    """urlsplit for http(s) URLs with a host; None for anything else or junk."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.netloc:
        return None
    return (parts.scheme, parts.netloc, parts.path, parts.query, parts.fragment)


def _bare_host(netloc: str) -> str:
    return netloc.rpartition("@")[2].partition(":")[0].lower()


def _unwrap(url: str) -> tuple[str, _Parts | None]:
    """Follow known redirector links (offline, up to 3 deep): the final URL and its parts."""
    parts = _split(url)
    for _ in range(3):
        if parts is None:
            break
        target = _redirect_target(_bare_host(parts[1]), parts[2], parts[3])
        if target is None:
            break
        url, parts = target, _split(target)
    return url, parts


def _host(netloc: str) -> str | None:
    """Lower-case, IDNA-encoded host (with userinfo and port as given); None if junk."""
    userinfo, _, hostport = netloc.rpartition("@")
    if hostport.startswith("["):  # IPv6 literal
        host, _, port = hostport[1:].partition("]")
        port = port[1:] if port.startswith(":") else ""
        host = "[" + host.lower() + "]"
    else:
        host, _, port = hostport.partition(":")
        host = host.lower().rstrip(".")
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                return None
    if not host:
        return None
    if port and not port.isdigit():
        return None
    return (userinfo + "@" if userinfo else "") + host + (":" + port if port else "")


def _canonical(parts: _Parts, drop: frozenset[str] = frozenset()) -> _Parts | None:
    """The canonical parts of an already split (and unwrapped) http(s) URL; None if junk."""
    scheme, netloc, path, query, fragment = parts
    scheme = scheme.lower()
    host = _host(netloc)
    if host is None:
        return None
    default = f":{_DEFAULT_PORTS[scheme]}"
    if host.endswith(default):
        host = host[: -len(default)]
    if "%" in path:
        path = _PCT.sub(_fix_pct, path)
    if not path.isascii() or " " in path:
        path = quote(path, safe=_PATH_SAFE)
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    if not path:
        path = "/"
    if query:
        kept = []
        for part in query.split("&"):
            if not part:
                continue
            key = unquote(part.partition("=")[0].replace("+", " "))
            if _is_tracking(key) or key.lower() in drop:
                continue
            if "%" in part:
                part = _PCT.sub(_fix_pct, part)
            if not part.isascii() or " " in part:
                part = quote(part, safe=_QUERY_SAFE)
            kept.append((key, part))
        kept.sort()
        query = "&".join(part for _key, part in kept)
    fragment = fragment if fragment.startswith("!") else ""
    return (scheme, host, path, query, fragment)


def _identity_of(canon: _Parts) -> str:
    """url_identity from canonical parts: no scheme, no leading "www."."""
    _scheme, host, path, query, fragment = canon
    if host.startswith("www."):
        host = host[4:]
    ident = host + path
    if query:
        ident += "?" + query
    if fragment:
        ident += "#" + fragment
    return ident


def _resolve(url: str, base: str | None) -> str:
    raw = url.strip() if isinstance(url, str) else ""
    if raw and base:
        with contextlib.suppress(ValueError):  # junk stays as given
            raw = urljoin(base.strip(), raw)
    return raw


def canonical_url(url: str, base: str | None = None) -> str:
    """One spelling per page: resolved, lower-case scheme/host, no tracking, no fragment.

    Relative URLs are resolved against `base`; Google and a few other redirect links are unwrapped;
    the host is IDNA-encoded; default ports, tracking parameters and the fragment are dropped (a
    `#!` route is kept); the remaining query parameters are sorted; a trailing slash is removed
    from the path but "/" is kept for the root. The scheme is left as given (see `url_identity`).
    Never raises: anything that is not an http(s) URL comes back stripped.
    """
    raw = _resolve(url, base)
    if not raw:
        return ""
    raw, parts = _unwrap(raw)
    canon = _canonical(parts) if parts is not None else None
    return urlunsplit(canon) if canon is not None else raw


def url_identity(url: str) -> str:
    """The dedupe key of a page: canonical URL without scheme and without a leading "www.".

    http/https and www/non-www spellings of one page collide; anything that is not an http(s) URL
    is returned canonical (i.e. stripped).
    """
    raw, parts = _unwrap(_resolve(url, None))
    canon = _canonical(parts) if parts is not None else None
    return _identity_of(canon) if canon is not None else raw


# ---------------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------------

_COMMENT_FRAGMENT = re.compile(
    r"^(?:comments?|c|cmt|div-comment|li-comment|reply|answer|p|post|entry|msg|findcomment)"
    r"[-_]?\d+$|^comment-[\w-]+$|^issuecomment-\d+$|^discussion_r\d+$",
    re.IGNORECASE,
)
# Query parameters that point at one comment of the page (WordPress "reply", Blogger).
_COMMENT_PARAMS = frozenset({"replytocom", "comment_id", "commentid", "showcomment"})
_REDDIT_PATH = re.compile(
    r"^/(?:(?:r|u|user)/[^/]+/)?comments/([a-z0-9]+)(?:/[^/]*(?:/([a-z0-9]+))?)?", re.I
)
_HN_HOSTS = frozenset({"news.ycombinator.com", "ycombinator.com"})
_GITHUB_PATH = re.compile(r"^/([\w.-]+)/([\w.-]+)/(?:issues|pull)/(\d+)(/.*)?$")
# Stack Exchange sites with their own domain (the API's site names, as listener.sources.stackexchange).
_SE_OWN_DOMAINS = {
    "stackoverflow.com": "stackoverflow",
    "superuser.com": "superuser",
    "serverfault.com": "serverfault",
    "askubuntu.com": "askubuntu",
    "stackapps.com": "stackapps",
    "mathoverflow.net": "mathoverflow",
}
# /questions/ID[/slug[/ANSWER_ID]]: a question, or one of its answers.
_SE_PATH = re.compile(r"^/(?:questions|q)/(\d+)(?:/[^/]*(?:/(\d+))?)?/?$")


def _stackexchange_site(host: str) -> str | None:
    """The API site name of a Stack Exchange host (`unix.stackexchange.com` -> `unix`)."""
    for domain, name in _SE_OWN_DOMAINS.items():
        if host == domain:
            return name
        if host.endswith("." + domain):  # meta.stackoverflow.com, es.stackoverflow.com
            return host[: -len(domain) - 1] + "." + name
    if host == "meta.stackexchange.com":
        return "meta"
    if host.endswith(".stackexchange.com"):
        sub = host[: -len(".stackexchange.com")]
        return sub if sub.count(".") <= 1 else None  # unix, meta.unix
    return None


def _special_thread(parts: _Parts) -> tuple[str, bool] | None:
    """(thread key, is this a comment) for URLs of known discussion sites, or None."""
    host = _bare_host(parts[1])
    path, query = parts[2], parts[3]
    if host.startswith("www."):
        host = host[4:]
    if host == "redd.it":
        post = path.strip("/").split("/")[0]
        return (f"reddit:{post.lower()}", False) if post.isalnum() else None
    if host == "reddit.com" or host.endswith(".reddit.com"):
        m = _REDDIT_PATH.match(path)
        return (f"reddit:{m.group(1).lower()}", m.group(2) is not None) if m else None
    if host in _HN_HOSTS and path.rstrip("/") == "/item":
        item = dict(parse_qsl(query)).get("id", "")
        return (f"hn:{item}", False) if item.isdigit() else None
    if host == "github.com":
        # An issue or pull request and its comments: the key listener.sources.github gives it.
        m = _GITHUB_PATH.match(path)
        if m is None:
            return None
        owner, repo, number, rest = m.groups()
        comment = bool(_COMMENT_FRAGMENT.match(parts[4] or "")) or bool(rest and rest != "/")
        return f"github:{owner.lower()}/{repo.lower()}#{number}", comment
    site = _stackexchange_site(host)
    if site is not None:
        # A question and its answers: the key listener.sources.stackexchange gives it.
        m = _SE_PATH.match(path)
        if m is None:
            return None
        answer = m.group(2) is not None or bool(parts[4] and parts[4].isdigit())
        return f"stackexchange:{site}:{m.group(1)}", answer
    return None


# Forum software, recognised by its topic URLs on any host (and under any folder): the topic's
# id is the thread, a post's number or a page number within it is not.
# Discourse: /t/slug/123, /t/slug/123/4, /t/123/4
_DISCOURSE = re.compile(r"^(.*?)/t/(?:[^/]+/)?(\d+)(?:/(\d+))?/?$")
_DISCOURSE_SHORT = re.compile(r"^(.*?)/t/(\d+)/(\d+)/?$")  # /t/ID/POST (no slug)
# XenForo: /threads/slug.123/, /threads/slug.123/post-45, /threads/slug.123/page-2, /threads/123/
_XENFORO = re.compile(
    r"^(.*?)/threads/(?:[^/]*\.)?(\d+)(?:/(?:post-(\d+)|page-\d+|unread|latest)?)?/?$"
)
# vBulletin friendly URLs: /threads/123-slug, /threads/123-slug/page2
_VBULLETIN = re.compile(r"^(.*?)/threads/(\d+)-[^/]*(?:/page\d+)?/?$")
# Invision: /topic/123-slug/, /topic/123-slug/page/2/
_INVISION = re.compile(r"^(.*?)/topic/(\d+)(?:-[^/]*)?(?:/page/\d+)?/?$")
# Flarum: /d/123-slug, /d/123-slug/4, /d/123/4
_FLARUM = re.compile(r"^(.*?)/d/(\d+)(?:-[^/]*)?(?:/(\d+))?/?$")
# vBulletin 4 "showthread.php?123-slug" puts the id first in the query.
_VB_QUERY_ID = re.compile(r"^(\d+)(?:-|$)")


def _query_values(query: str) -> dict[str, str]:
    return {k.lower(): v for k, v in parse_qsl(query, keep_blank_values=True)}


def _forum_thread(canon: _Parts, fragment: str) -> tuple[str, bool] | None:
    """(thread key, is this a post within the topic) for forum topic URLs, or None.

    Discourse topics get the key listener.sources.discourse gives them (one thread whether read
    through `kind: discourse` or a plain feed); the others get their topic's URL, without the
    slug, post or page.
    """
    _scheme, host, path, query, _fragment = canon
    bare = host[4:] if host.startswith("www.") else host
    anchor = bool(fragment and _COMMENT_FRAGMENT.match(fragment))
    if "/t/" in path:
        m = _DISCOURSE_SHORT.match(path) or _DISCOURSE.match(path)
        if m is not None:
            post = m.group(3)
            return f"discourse:{host}:{m.group(2)}", anchor or bool(post and post != "1")
    if "/threads/" in path:
        m = _XENFORO.match(path)
        if m is not None:
            return f"{bare}{m.group(1)}/threads/{m.group(2)}", anchor or m.group(3) is not None
        m = _VBULLETIN.match(path)
        if m is not None:
            return f"{bare}{m.group(1)}/threads/{m.group(2)}", anchor
    if "/topic/" in path:
        m = _INVISION.match(path)
        if m is not None:
            values = _query_values(query)
            comment = anchor or "comment" in values or values.get("do") == "findcomment"
            return f"{bare}{m.group(1)}/topic/{m.group(2)}", comment
    if "/d/" in path:
        m = _FLARUM.match(path)
        if m is not None:
            post = m.group(3)
            return f"{bare}{m.group(1)}/d/{m.group(2)}", anchor or bool(post and post != "1")
    if path.endswith(("/viewtopic.php", "/showthread.php")) and query:
        values = _query_values(query)
        topic = values.get("t") or values.get("topic") or ""
        if not topic and path.endswith("/showthread.php"):
            m = _VB_QUERY_ID.match(query)
            topic = m.group(1) if m else ""
        if topic.isdigit():
            # phpBB and vBulletin: ?t=TOPIC (&p=POST): a post is a reply unless the link says
            # nothing more than the topic.
            return f"{bare}{path}?t={topic}", anchor or "p" in values
    return None


@dataclass(frozen=True)
class UrlKeys:
    """Everything the pipeline derives from one link, computed in one pass."""

    canonical: str  # canonical_url
    identity: str  # url_identity: the page
    thread_key: str  # thread_key_for_url: the conversation
    is_comment: bool  # the link points at one comment (anchor, replytocom, Reddit comment)


def url_keys(url: str, base: str | None = None) -> UrlKeys:
    """canonical_url, url_identity, thread_key_for_url and is_comment_url of a link at once."""
    raw = _resolve(url, base)
    raw, parts = _unwrap(raw)
    if parts is None:
        return UrlKeys(raw, raw, raw, False)
    canon_parts = _canonical(parts)
    if canon_parts is None:
        return UrlKeys(raw, raw, raw, False)
    canon = urlunsplit(canon_parts)
    identity = _identity_of(canon_parts)
    special = _special_thread(parts) or _forum_thread(canon_parts, parts[4])
    if special is not None:
        return UrlKeys(canon, identity, special[0], special[1])
    fragment, query = parts[4], parts[3]
    is_comment = bool(fragment and _COMMENT_FRAGMENT.match(fragment))
    thread = identity
    if query:
        keys = {unquote(p.partition("=")[0]).lower() for p in query.split("&")}
        if not keys.isdisjoint(_COMMENT_PARAMS):
            is_comment = True
            thread = _identity_of(_canonical(parts, drop=_COMMENT_PARAMS) or canon_parts)
    return UrlKeys(canon, identity, thread, is_comment)


def is_comment_url(url: str) -> bool:
    """True for links to one comment: `#comment-12`, `#c12`, `?replytocom=`, a Reddit comment."""
    return url_keys(url).is_comment


def thread_key_for_url(url: str) -> str:
    """The conversation a URL belongs to.

    Reddit posts and their comments -> `reddit:{post id}`; a Hacker News item -> `hn:{id}`; a
    GitHub issue or pull request and its comments -> `github:{owner}/{repo}#{n}`; a Stack Exchange
    question and its answers -> `stackexchange:{site}:{id}`; a Discourse topic and its posts ->
    `discourse:{host}:{id}`; a phpBB, vBulletin, XenForo, Invision or Flarum topic and its posts
    and pages -> the topic's URL without slug, post or page (`forum.example.com/threads/123`); a
    link to a comment on a page (`#comment-12`, `#c12`, `?replytocom=12`, `?showComment=`) -> the
    page's identity; anything else -> its own `url_identity` (it starts its own thread).
    """
    return url_keys(url).thread_key


# ---------------------------------------------------------------------------------------------
# Fingerprints
# ---------------------------------------------------------------------------------------------

_NOT_WORD = re.compile(r"[\W_]+")
# How much of the text the fingerprint covers: enough to tell stories apart, short enough that a
# syndicated copy with a footer ("This story first appeared on ...") still matches.
FINGERPRINT_TEXT_CHARS = 500


# For ASCII text, `_NOT_WORD.sub("", ...)` keeps exactly the letters and digits: as bytes, a
# translate that deletes everything else does the same ~25x faster (the fingerprint of every item
# of a poll is computed, so this is hot).
_ASCII_NOT_ALNUM = bytes(b for b in range(128) if not chr(b).isalnum())


def _fold(s: str) -> str:
    if s.isascii():  # most text: NFKC and casefold are no-ops beyond lower()
        return s.lower().encode("ascii").translate(None, _ASCII_NOT_ALNUM).decode("ascii")
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", s).casefold())


def content_fingerprint(title: str, text: str) -> str:
    """A short hash that is equal for syndicated copies of one story.

    Case, punctuation, whitespace and Unicode compatibility forms do not count; only the start of
    the text does, so an appended footer does not change it. Use `content_hash` to detect edits.
    """
    text = text or ""
    # Folding only removes characters, so a prefix of the text usually holds enough of them.
    body = _fold(text[: FINGERPRINT_TEXT_CHARS * 3])
    if len(body) < FINGERPRINT_TEXT_CHARS and len(text) > FINGERPRINT_TEXT_CHARS * 3:
        body = _fold(text)
    folded = _fold(title or "") + "\x1f" + body[:FINGERPRINT_TEXT_CHARS]
    return hashlib.blake2b(folded.encode("utf-8"), digest_size=8).hexdigest()


def content_hash(title: str, text: str) -> str:
    """A hash of the exact title and text: changes on any edit."""
    data = (
        (title or "").encode("utf-8", "surrogatepass")
        + b"\x00"
        + (text or "").encode("utf-8", "surrogatepass")
    )
    return hashlib.blake2b(data, digest_size=16).hexdigest()


# ---------------------------------------------------------------------------------------------
# Sentences
# ---------------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s)|\n")
# fmt: off
_ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "inc", "ltd", "co", "corp",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "no",
    "nos", "fig", "figs", "approx", "est", "dept", "univ", "gen", "gov", "sen", "rep", "mt",
    "ft", "av", "ave", "rd", "blvd", "cf", "al", "ed", "eds", "vol", "vols", "pp", "ca", "viz",
    "resp", "incl"
})
# fmt: on
_DOTTED = re.compile(r"(?:\w\.)+\w$")  # e.g, i.e, U.S, a.m


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans (start, end) in `text`; see `_split_sentences`. The last few results are
    remembered: a post naming two brands is split once, not once per snippet and score."""
    return list(_split_sentences_cached(text))


@lru_cache(maxsize=8)
def _split_sentences_cached(text: str) -> tuple[tuple[int, int], ...]:
    return tuple(_split_sentences(text))


def _split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans (start, end) in `text`, whitespace excluded.

    Ends at ".", "!", "?", "…" (and runs like "?!") followed by whitespace, and at every newline.
    A period after a known abbreviation ("Mr.", "e.g.", "etc.") or a single initial ("J.") is not
    an end; decimals and URLs never are (no whitespace after the dot).
    """
    spans: list[tuple[int, int]] = []
    start = 0
    n = len(text)
    for m in _SENTENCE_END.finditer(text):
        end = m.end()
        token = m.group(0)
        if token[0] == "." and token.rstrip("\"'”’»)]") == ".":
            dot = m.start()
            word_start = max(text.rfind(" ", start, dot), text.rfind("\n", start, dot), start - 1)
            word = text[word_start + 1 : dot].lstrip("(\"'“‘")
            low = word.lower()
            if low in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()) or _DOTTED.search(word):
                continue
        _add_span(text, start, end, spans)
        start = end
    _add_span(text, start, n, spans)
    return spans


def _add_span(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        spans.append((start, end))


# ---------------------------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------------------------

EARLIEST = datetime(1995, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)
_TZ_NO_COLON = re.compile(r"([+-]\d{2})(\d{2})$")
_SPACE_TZ = re.compile(r"\s+([+-]\d{2}:?\d{2}|Z|UTC|GMT)$", re.IGNORECASE)


def _iso_zone(m: re.Match[str]) -> str:
    zone = m.group(1)
    return "+00:00" if zone.upper() in ("Z", "UTC", "GMT") else zone


def _from_string(value: str) -> datetime | None:
    s = value.strip()
    if not s:
        return None
    if s[0].isdigit():
        try:
            return datetime.fromisoformat(s)  # RFC 3339, the common case
        except ValueError:
            pass
        # "2024-05-01 10:00:00 +0000", "2024-05-01T10:00:00 GMT", "...+0200"
        iso = _SPACE_TZ.sub(_iso_zone, s)
        iso = _TZ_NO_COLON.sub(r"\1:\2", iso)
        try:
            return datetime.fromisoformat(iso)
        except ValueError:
            pass
    try:
        return parsedate_to_datetime(s)
    except (TypeError, ValueError, IndexError):
        pass
    # The long tail (W3CDTF variants, Korean/Greek/Hungarian dates, ...) that feedparser knows.
    parsed = _feedparser_date(s)
    return datetime.fromtimestamp(calendar.timegm(parsed), UTC) if parsed else None


def parse_datetime(value: object, *, now: datetime | None = None) -> datetime | None:
    """An aware UTC datetime from a feed date, or None when unknown.

    Accepts datetime (naive = UTC), time.struct_time (as feedparser gives, UTC), epoch seconds,
    and strings in ISO 8601 / RFC 3339 / RFC 822 and the other forms feedparser understands. Dates
    more than a day in the future (against `now`, default the current time) or before 1995 are
    treated as unknown: they are clock errors or placeholders, and would sort a mention wrongly.
    """
    dt: datetime | None
    try:
        if isinstance(value, datetime):
            dt = value
        elif isinstance(value, time.struct_time):
            dt = datetime.fromtimestamp(calendar.timegm(value), UTC)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            dt = datetime.fromtimestamp(value, UTC)
        elif isinstance(value, str):
            dt = _from_string(value)
        else:
            return None
    except (ValueError, OverflowError, OSError, TypeError):
        return None
    if dt is None:
        return None
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    current = now if now is not None else datetime.now(UTC)
    if dt < EARLIEST or dt > current + FUTURE_SLACK:
        return None
    return dt
