"""Feed bytes to normalised Items: RSS 0.9x/1.0/2.0, Atom 0.3/1.0, RDF, CDF and JSON Feed.

Two XML parsers share the work. fastfeedparser (lxml and a native extractor) is 55-100x faster
than feedparser and reads UTF-8 RSS, Atom and RDF the same way; feedparser is the reference and
takes the documents the fast one gets wrong (measured on feedparser's own test corpus):

- before the fast parse (`_reference_reason`): a charset other than UTF-8 or ASCII (HTTP or XML
  declaration), a root other than rss/feed/RDF (CDF, unknown roots), Atom 0.3 base64 content,
  RSS 1.0 with content:encoded;
- after it, from its output (`_parse_fast`, `_fast_output_problem`): it raised, it found no
  entries in a document that closes some, an entry has U+FFFD (bytes that are not UTF-8), or an
  empty title/text where the document has XHTML titles/summaries or RSS body/fullitem elements.

JSON Feed is parsed here with `json`.

Before either parser sees a document, it is made safe and well-formed here: a DOCTYPE is removed
(no external DTD, no parameter entities, no expansion beyond simple literal entities within a
budget), so neither billion laughs nor XXE can reach a parser; stray "&" and HTML named entities
outside CDATA are escaped, which keeps "AT&T" and "&nbsp;" instead of losing them to recovery.
"""

from __future__ import annotations

import bisect
import codecs
import html
import io
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html.entities import html5 as _HTML5_ENTITIES
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import fastfeedparser
import feedparser

from listener.models import Item
from listener.text import (
    UrlKeys,
    content_fingerprint,
    html_to_text,
    normalise_text,
    parse_datetime,
    url_keys,
)

log = logging.getLogger(__name__)

MAX_ITEMS = 2_000
MAX_TEXT_CHARS = 100_000
MAX_TITLE_CHARS = 1_000
# Entity expansion from a DOCTYPE may add at most this many bytes to a document.
MAX_ENTITY_EXPANSION = 1_000_000

PARSER_FAST = "fastfeedparser"
PARSER_REFERENCE = "feedparser"
PARSER_JSON = "jsonfeed"


class NotAFeed(Exception):
    """The body is empty, an HTML page (a login or error page), or some other non-feed document."""


@dataclass(frozen=True)
class ParsedFeed:
    title: str | None
    items: list[Item]
    parser: str  # which parser produced the entries: fastfeedparser, feedparser or jsonfeed
    warning: str | None  # why the document was not clean, when entries were recovered anyway
    # Entries the document has beyond the MAX_ITEMS that were read (see `truncation`).
    dropped: int = 0

    @property
    def truncation(self) -> str | None:
        """What the user should know when the feed was cut to MAX_ITEMS entries, else None."""
        if not self.dropped:
            return None
        return (
            f"feed cut: it has {MAX_ITEMS + self.dropped:,} entries, only the first "
            f"{MAX_ITEMS:,} were read"
        )


# ---------------------------------------------------------------------------------------------
# Sniffing: encoding family, root element, DOCTYPE
# ---------------------------------------------------------------------------------------------

_HEAD_BYTES = 65_536
_SMALL_HEAD_BYTES = 4_096
_WIDE_BOMS = (
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
)
_WIDE_NO_BOM = (
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<\x00", "utf-16-be"),
    (b"<\x00", "utf-16-le"),
    (b"\x00\x00\x00{", "utf-32-be"),
    (b"{\x00\x00\x00", "utf-32-le"),
    (b"\x00{\x00", "utf-16-be"),
    (b"{\x00", "utf-16-le"),
)
_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*?\?>")
_DECL_ENCODING = re.compile(rb"""encoding\s*=\s*["']([^"']*)["']""")
_PROLOG_TOKEN = re.compile(r"<\?|<!--|<!DOCTYPE|<!|<([A-Za-z_][\w.:-]*)", re.I)
_DTD_TOKEN = re.compile(r"\"[^\"]*\"|'[^']*'|<!--.*?-->|\[|\]|>", re.S)
_ENTITY_DECL = re.compile(
    r"""<!ENTITY\s+(%\s+)?([A-Za-z_][\w.-]*)\s+(?:"([^"]*)"|'([^']*)'|[^>]*)>""", re.S
)
_CHAR_REF = re.compile(r"^&#(?:[0-9]{1,7}|x[0-9a-fA-F]{1,6});$")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([^\"';,\s]+)", re.I)

FEED_ROOTS = frozenset({"rss", "feed", "rdf", "channel"})
_HTML_ROOTS = frozenset(
    {"html", "head", "body", "meta", "title", "div", "p", "br", "script", "form", "table", "link"}
)
_OTHER_DOCUMENTS = {
    "opml": "an OPML outline (a list of feeds), not a feed: add its feeds one by one",
    "urlset": "an XML sitemap, not a feed",
    "sitemapindex": "an XML sitemap index, not a feed",
    "error": "an XML error document, not a feed",
    "errors": "an XML error document, not a feed",
}


@dataclass
class _Sniffed:
    root: str  # local name of the first element, lower-case; "" if none
    root_pos: int  # offset of the first element in the body (bytes are latin-1-decoded: 1:1)
    doctype: tuple[int, int] | None  # span of the DOCTYPE declaration
    head: str


def _wide_codec(body: bytes) -> tuple[str | None, int]:
    """(codec, BOM length) for UTF-16/32 bodies, else (None, 0)."""
    for bom, codec in _WIDE_BOMS:
        if body.startswith(bom):
            return codec, len(bom)
    for prefix, codec in _WIDE_NO_BOM:
        if body.startswith(prefix):
            return codec, 0
    return None, 0


def _to_utf8(body: bytes, codec: str, bom: int) -> bytes:
    """Transcode a UTF-16/32 document to UTF-8 and say so in its XML declaration."""
    text = body[bom:].decode(codec, errors="replace")
    data = text.encode("utf-8")
    decl = _XML_DECL.match(data)
    if decl:
        fixed = _DECL_ENCODING.sub(b'encoding="utf-8"', decl.group(0))
        data = fixed + data[decl.end() :]
    return data


def _sniff(body: bytes) -> _Sniffed:
    """Find the root element (and a DOCTYPE before it) in the first 4 KB, else the first 64 KB."""
    if len(body) > _SMALL_HEAD_BYTES:
        try:
            sniffed = _sniff_head(body[:_SMALL_HEAD_BYTES].decode("latin-1"))
        except NotAFeed:  # a DOCTYPE longer than the small head
            sniffed = None
        if sniffed is not None and sniffed.root:
            return sniffed
    return _sniff_head(body[:_HEAD_BYTES].decode("latin-1"))


def _sniff_head(head: str) -> _Sniffed:
    """The first element of `head`, stepping over the declaration, PIs, comments and DOCTYPE.

    latin-1 maps bytes 1:1, so offsets found in `head` are offsets in the body. A comment or PI
    that does not end within `head` gives no root, so that the caller can look further.
    """
    doctype = None
    pos = 0
    while True:
        m = _PROLOG_TOKEN.search(head, pos)
        if m is None:
            return _Sniffed("", -1, doctype, head)
        if m.group(1):
            return _Sniffed(m.group(1).rpartition(":")[2].lower(), m.start(), doctype, head)
        token = m.group(0)
        if token.upper() == "<!DOCTYPE":
            end = _doctype_end(head, m.end())
            doctype = (m.start(), end)
            pos = end
            continue
        closing = {"<?": "?>", "<!--": "-->"}.get(token, ">")
        end = head.find(closing, m.end())
        if end < 0:
            return _Sniffed("", -1, doctype, head)
        pos = end + len(closing)


def _doctype_end(head: str, start: int) -> int:
    """Offset just past the DOCTYPE that starts before `start`; quoted strings and the internal
    subset (which contains '>') are skipped."""
    in_subset = False
    for m in _DTD_TOKEN.finditer(head, start):
        token = m.group(0)
        if token == "[":
            in_subset = True
        elif token == "]":
            in_subset = False
        elif token == ">" and not in_subset:
            return m.end()
    raise NotAFeed(f"the DOCTYPE does not end within the first {_HEAD_BYTES // 1024} KB")


def _not_a_feed_reason(sniffed: _Sniffed, content_type: str) -> str | None:
    """Why a document with this root is certainly not a feed, or None if it may be one.

    The reason describes the document without quoting it: it is stored and shown (`status`,
    Datasette, source-health alerts), and the answer may come from somewhere a feed's link led.
    """
    root = sniffed.root
    if root in FEED_ROOTS:
        return None
    if root in _HTML_ROOTS or (root and "html" in content_type):
        return "got an HTML page (a login, error or home page?), not a feed"
    if root in _OTHER_DOCUMENTS:
        return "got " + _OTHER_DOCUMENTS[root]
    if not root:
        if sniffed.head.lstrip().startswith("<"):
            return "not a feed: an XML document without any element"
        return "not a feed: neither XML nor JSON"
    return None


# ---------------------------------------------------------------------------------------------
# Making the bytes safe and well-formed
# ---------------------------------------------------------------------------------------------


def _remove_doctype(body: bytes, span: tuple[int, int]) -> tuple[bytes, str | None]:
    """Drop the DOCTYPE; expand its simple literal entities ourselves, within a budget.

    Nothing external is ever loaded and no entity refers to another, so neither XXE nor
    exponential expansion is possible. References to dropped entities stay in the text and are
    escaped later, so they show up as literal "&name;".
    """
    start, end = span
    decl = body[start:end].decode("latin-1")
    safe: dict[str, str] = {}
    dropped = 0
    for m in _ENTITY_DECL.finditer(decl):
        is_parameter, name, value = m.group(1), m.group(2), m.group(3) or m.group(4)
        if (
            is_parameter
            or value is None
            or len(value) > 1024
            or "%" in value
            or ("&" in value and not _CHAR_REF.match(value))
        ):
            dropped += 1
            continue
        safe[name] = value.replace("<", "&lt;") if "&" not in value else value
    rest = body[end:]
    if safe:
        budget = MAX_ENTITY_EXPANSION
        names = b"|".join(re.escape(n.encode("latin-1")) for n in safe)
        ref = re.compile(rb"&(" + names + rb");")

        def expand(m: re.Match[bytes]) -> bytes:
            nonlocal budget
            value = safe[m.group(1).decode("latin-1")].encode("latin-1", "replace")
            budget -= len(value)
            return value if budget >= 0 else m.group(0)

        rest = ref.sub(expand, rest)
        if budget < 0:
            dropped += 1
    note = f"DOCTYPE removed, {dropped} unsafe entity declaration(s) ignored" if dropped else None
    return body[:start] + rest, note


# An "&" that does not start one of XML's own five entities or a character reference.
# References to no character are flagged too: NUL, surrogates (fastfeedparser raises) and, by
# their length, numbers that may be beyond U+10FFFF (feedparser raises).
_SUSPECT_AMP = re.compile(
    rb"&(?!(?:amp|lt|gt|quot|apos"
    rb"|#x(?!0*(?:[dD][89a-fA-F][0-9a-fA-F]{2}|0);)[0-9a-fA-F]{1,5}"
    rb"|#(?!0*(?:0|5529[6-9]|55[3-9][0-9]{2}|56[0-9]{3}|57[0-2][0-9]{2}|573[0-3][0-9]|5734[0-3]);)"
    rb"[0-9]{1,6}"
    rb");)"
)
_AMP_TOKEN = re.compile(
    rb"&(?:(#[0-9]{1,10}|#[xX][0-9a-fA-F]{1,8})|([A-Za-z][A-Za-z0-9]{0,31}))?(;)?"
)
_XML_ENTITIES = frozenset({b"amp", b"lt", b"gt", b"quot", b"apos"})
_CDATA_OPEN = b"<![CDATA["
_CDATA_CLOSE = b"]]>"


def _first_suspect_amp(body: bytes) -> int:
    """Offset of the first "&" outside CDATA that XML would reject, or -1."""
    pos = 0
    while True:
        m = _SUSPECT_AMP.search(body, pos)
        if m is None:
            return -1
        at = m.start()
        opened = body.rfind(_CDATA_OPEN, pos, at)
        if opened >= 0 and body.find(_CDATA_CLOSE, opened, at) < 0:
            closed = body.find(_CDATA_CLOSE, at)
            if closed < 0:
                return -1
            pos = closed + len(_CDATA_CLOSE)
            continue
        return at


def _fix_amp(m: re.Match[bytes]) -> bytes:
    number, name, semi = m.group(1), m.group(2), m.group(3)
    if number and semi:
        hexadecimal = number[1:2] in (b"x", b"X")
        value = int(number[2:], 16) if hexadecimal else int(number[1:])
        if value == 0 or 0xD800 <= value <= 0xDFFF or value > 0x10FFFF:
            return b""  # no such character
        return b"&#%d;" % value
    if name and semi:
        if name in _XML_ENTITIES:
            return m.group(0)
        chars = _HTML5_ENTITIES.get(name.decode("ascii") + ";")
        if chars:
            return b"".join(b"&#%d;" % ord(c) for c in chars)
    return b"&amp;" + m.group(0)[1:]


def _repair_ampersands(body: bytes) -> bytes:
    """Escape stray "&" and turn HTML named entities into character references, outside CDATA."""
    out: list[bytes] = []
    pos = 0
    while pos < len(body):
        opened = body.find(_CDATA_OPEN, pos)
        if opened < 0:
            out.append(_AMP_TOKEN.sub(_fix_amp, body[pos:]))
            break
        out.append(_AMP_TOKEN.sub(_fix_amp, body[pos:opened]))
        closed = body.find(_CDATA_CLOSE, opened)
        end = len(body) if closed < 0 else closed + len(_CDATA_CLOSE)
        out.append(body[opened:end])
        pos = end
    return b"".join(out)


# ---------------------------------------------------------------------------------------------
# Routing between the fast parser and the reference parser
# ---------------------------------------------------------------------------------------------

_UTF8_NAMES = frozenset({"utf-8", "ascii"})
_XHTML_TEXT = re.compile(
    rb"<(?:[\w.-]+:)?(?:title|summary|subtitle|tagline)\b[^>]*\btype\s*=\s*[\"']"
    rb"(?:xhtml|application/xhtml\+xml)",
    re.I,
)
_XHTML_BODY = re.compile(
    rb"<(?:[\w.-]+:)?body\b[^>]*xmlns(?::\w+)?\s*=\s*[\"']http://www\.w3\.org/1999/xhtml"
)
_BASE64_MODE = re.compile(rb"\bmode\s*=\s*[\"']base64", re.I)
_ENTRY_START = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(?:item|entry)[\s>]")
_ENTRY_END = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?(?:item|entry)\s*>")


def _codec_name(label: str) -> str | None:
    try:
        return codecs.lookup(label.strip()).name
    except (LookupError, ValueError):  # unknown, or junk such as an embedded NUL
        return None


def _charset_problem(body: bytes, content_type: str) -> str | None:
    """Why the fast parser cannot be trusted with this document's charset, or None.

    Only the labels are checked here (HTTP charset, XML declaration). Bytes that are not valid
    UTF-8 show up as U+FFFD in fastfeedparser's output and are caught after the parse, which costs
    nothing, where decoding the whole body up front costs a third of the parse.
    """
    m = _CHARSET.search(content_type)
    if m:
        http = _codec_name(m.group(1))
        if http not in _UTF8_NAMES:
            return f"HTTP charset {m.group(1)!r}"
    decl = _XML_DECL.match(body, 0, 512)
    if decl:
        enc = _DECL_ENCODING.search(decl.group(0))
        if enc and _codec_name(enc.group(1).decode("latin-1")) not in _UTF8_NAMES:
            return f"declared encoding {enc.group(1).decode('latin-1')!r}"
    return None


def _reference_reason(body: bytes, sniffed: _Sniffed, content_type: str) -> str | None:
    """Why this document goes to feedparser before fastfeedparser is even tried, or None.

    Each rule is a class of documents that fastfeedparser got wrong on feedparser's corpus: other
    charsets (it ignores the HTTP charset and mis-decodes mislabelled bytes), CDF and other roots
    it does not know, Atom 0.3 base64 content (it returns the base64) and content:encoded in RSS
    1.0 (it drops it). The rest of the rules
    need its output and are in `_fast_output_problem`. Only the head is read here: every full scan
    of the body costs about a sixth of the fast parse.
    """
    if sniffed.root not in ("rss", "feed", "rdf"):
        return f"root element <{sniffed.root}>"
    problem = _charset_problem(body, content_type)
    if problem:
        return problem
    atom03 = sniffed.root == "feed" and "purl.org/atom/ns#" in sniffed.head
    if atom03 and b"base64" in body and _BASE64_MODE.search(body):
        return "Atom 0.3 base64 content"
    if sniffed.root == "rdf" and b":encoded" in body:
        return "RSS 1.0 content:encoded"  # fastfeedparser reads only <description> in RDF items
    return None


def _fast_output_problem(body: bytes, title: str, entries: list[_Entry]) -> str | None:
    """Why fastfeedparser's entries cannot be used, judged from the entries themselves.

    Scans of the body run only when an entry shows the symptom: U+FFFD where the bytes were not
    UTF-8 (feedparser falls back to Windows-1252), an empty title or text where the document has
    XHTML titles/summaries or RSS body/fullitem elements (fastfeedparser returns "" for them).
    """
    if not body.isascii():
        for e in entries:
            if "\ufffd" in e.title or "\ufffd" in e.content:
                return "bytes that are not UTF-8"
    if (not title or any(not e.title or not e.content for e in entries)) and b"xhtml" in body:
        if _XHTML_TEXT.search(body):
            return "XHTML title or summary"
        if _XHTML_BODY.search(body):
            return "xhtml:body"
    if any(not e.content for e in entries) and (
        b"<body" in body or b":body" in body or b"<fullitem" in body
    ):
        return "RSS body or fullitem element"  # UserLand extensions fastfeedparser ignores
    return None


def _entry_count(body: bytes) -> int:
    """How many entries the document closes: a floor for what a parser should find."""
    count = body.count(b"</item>") + body.count(b"</entry>")
    if b":item>" in body or b":entry>" in body:
        count = sum(1 for _ in _ENTRY_END.finditer(body))
    return count


# ---------------------------------------------------------------------------------------------
# Parser outputs, reduced to what an Item needs
# ---------------------------------------------------------------------------------------------


@dataclass
class _Entry:
    title: str = ""
    title_html: bool | None = None  # None: unknown, guess from the text
    content: str = ""
    content_html: bool = True
    link: str = ""
    native_id: str | None = None
    author: str | None = None
    published: Any = None
    updated: Any = None
    reply_ref: str | None = None  # thr:in-reply-to ref (the parent's id)
    reply_href: str | None = None  # thr:in-reply-to href (the parent's URL)
    replies_url: str | None = None  # comments feed of this item
    comments_url: str | None = None  # comments page of this item
    extra: dict[str, Any] = field(default_factory=dict)


# feed title, feed link, entries (at most MAX_ITEMS), how many entries the document has
_FeedParts = tuple[str, str, list[_Entry], int]


def _str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _is_plain(content_type: str | None) -> bool:
    return (content_type or "").lower() in ("text", "text/plain")


def _replies_link(links: Any) -> str | None:
    for link in links or ():
        if isinstance(link, Mapping) and link.get("rel") == "replies" and link.get("href"):
            return _str(link.get("href"))
    return None


def _first_content(entry: Mapping[str, Any]) -> tuple[str, bool]:
    """The first non-blank `content` part of an entry, and whether it is plain text."""
    for part in entry.get("content") or ():
        value = _str(part.get("value"))
        if value.strip():
            return value, _is_plain(part.get("type"))
    return "", False


def _from_fast(entry: Mapping[str, Any], has_ids: bool) -> _Entry:
    content, plain = _first_content(entry)
    if not content:
        content = _str(entry.get("description"))
    if not content:
        # YouTube and other Media RSS feeds keep the text in media:description.
        for media in entry.get("media_content") or ():
            content = _str(media.get("description")) if isinstance(media, Mapping) else ""
            if content.strip():
                break
    link = _str(entry.get("link")).strip()
    native_id = _str(entry.get("id")).strip() or None
    if native_id and not has_ids and native_id == link:
        native_id = None  # fastfeedparser fills id from the link when the feed has none
    return _Entry(
        title=_str(entry.get("title")),
        content=content,
        content_html=not plain,
        link=link,
        native_id=native_id,
        author=_str(entry.get("author")) or None,
        published=entry.get("published"),
        updated=entry.get("updated"),
        replies_url=_replies_link(entry.get("links")),
        comments_url=_str(entry.get("comments")) or None,
    )


def _from_reference(entry: dict[str, Any]) -> _Entry:
    content, plain = _first_content(entry)
    if not content:
        content = _str(entry.get("summary"))
        plain = _is_plain((entry.get("summary_detail") or {}).get("type"))
    title_type = (entry.get("title_detail") or {}).get("type")
    reply = entry.get("thr_in-reply-to")
    reply = reply if isinstance(reply, Mapping) else {}
    return _Entry(
        title=_str(entry.get("title")),
        title_html=None if title_type is None else not _is_plain(title_type),
        content=content,
        content_html=not plain,
        link=_str(entry.get("link")).strip(),
        native_id=_str(entry.get("id")).strip() or None,
        author=_str(entry.get("author")) or None,
        published=entry.get("published_parsed") or entry.get("published"),
        # dict.get: FeedParserDict maps a missing "updated" to "published" (with a warning).
        updated=dict.get(entry, "updated_parsed") or dict.get(entry, "updated"),
        reply_ref=_str(reply.get("ref")).strip() or None,
        reply_href=_str(reply.get("href")).strip() or None,
        replies_url=_str(entry.get("wfw_commentrss")).strip() or _replies_link(entry.get("links")),
        comments_url=_str(entry.get("comments")) or None,
    )


_IN_REPLY_TO = re.compile(rb"<(?:[\w.-]+:)?in-reply-to\b([^>]*)>")
_COMMENT_RSS = re.compile(
    rb"<(?:[\w.-]+:)?commentRss\s*>\s*(?:<!\[CDATA\[)?\s*([^<\]\s]*)", re.IGNORECASE
)
_ATTRIBUTE = re.compile(rb"""([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def _attach_thread_markup(body: bytes, entries: list[_Entry], head: str) -> None:
    """Add thr:in-reply-to and wfw:commentRss to entries from the fast parser, which drops them.

    Runs only when the root element declares the namespaces (as feeds do). A regex pass over the
    bytes assigns each element to the entry it sits in by offset; entries are matched by
    position, so this only runs when the document's entry elements and the parsed entries line
    up one to one.
    """
    has_reply = "purl.org/syndication/thread" in head
    has_comments = "wellformedweb.org" in head.lower()
    if not (has_reply or has_comments):
        return
    starts = [m.start() for m in _ENTRY_START.finditer(body)]
    if len(starts) != len(entries):
        log.debug("thread markup skipped: %d entry elements, %d entries", len(starts), len(entries))
        return

    def owner(offset: int) -> _Entry | None:
        i = bisect.bisect_right(starts, offset) - 1
        return entries[i] if i >= 0 else None

    if has_reply:
        for m in _IN_REPLY_TO.finditer(body):
            entry = owner(m.start())
            if entry is None or entry.reply_ref or entry.reply_href:
                continue
            attrs = {
                a.group(1).lower(): a.group(2) or a.group(3) or b""
                for a in _ATTRIBUTE.finditer(m.group(1))
            }
            entry.reply_ref = _attr(attrs.get(b"ref"))
            entry.reply_href = _attr(attrs.get(b"href"))
    if has_comments:
        for m in _COMMENT_RSS.finditer(body):
            entry = owner(m.start())
            if entry is not None and not entry.replies_url and m.group(1):
                entry.replies_url = _attr(m.group(1))


def _attr(value: bytes | None) -> str | None:
    if not value:
        return None
    text = html.unescape(value.decode("utf-8", "replace")).strip()
    return text or None


# ---------------------------------------------------------------------------------------------
# JSON Feed
# ---------------------------------------------------------------------------------------------

_JSONFEED_VERSION = re.compile(r"^https?://jsonfeed\.org/version/1(?:\.\d+)?/?$")


def _parse_json_feed(body: bytes, url: str) -> tuple[str | None, list[_Entry], str, list[str]]:
    """(title, entries, base URL, warnings) of a JSON Feed 1.0/1.1 document."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise NotAFeed(f"not a feed: invalid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise NotAFeed("got JSON, but not a JSON Feed (not an object)")
    warnings: list[str] = []
    version = doc.get("version")
    items = doc.get("items")
    if not isinstance(version, str) or not _JSONFEED_VERSION.match(version.strip()):
        if not isinstance(items, list):
            raise NotAFeed("got JSON, but not a JSON Feed (no jsonfeed.org version, no items)")
        warnings.append(f"JSON Feed version {version!r} is not a jsonfeed.org version URL")
    if not isinstance(items, list):
        warnings.append("JSON Feed has no items list")
        items = []
    base = url
    for key in ("home_page_url", "feed_url"):
        candidate = _str(doc.get(key)).strip()
        if candidate.startswith(("http://", "https://")):
            base = candidate
            break
    feed_author = _json_author(doc)
    entries = []
    for raw in items:
        if not isinstance(raw, dict):
            continue
        html_content = _str(raw.get("content_html"))
        text_content = _str(raw.get("content_text"))
        summary = _str(raw.get("summary"))
        if html_content.strip():
            content, is_html = html_content, True
        elif text_content.strip():
            content, is_html = text_content, False
        else:
            content, is_html = summary, False
        external = _str(raw.get("external_url")).strip()
        entry = _Entry(
            title=_str(raw.get("title")),
            title_html=False,
            content=content,
            content_html=is_html,
            link=_str(raw.get("url")).strip() or external,
            native_id=_str(raw.get("id")).strip() or None,
            author=_json_author(raw) or feed_author,
            published=_str(raw.get("date_published")) or None,
            updated=_str(raw.get("date_modified")) or None,
        )
        if external and external != entry.link:
            entry.extra["external_url"] = external
        entries.append(entry)
    title = _str(doc.get("title")) or None
    return title, entries, base, warnings


def _json_author(obj: Mapping[str, Any]) -> str | None:
    authors = obj.get("authors")
    if isinstance(authors, list) and authors and isinstance(authors[0], dict):
        return _str(authors[0].get("name")) or None
    author = obj.get("author")  # JSON Feed 1.0
    if isinstance(author, dict):
        return _str(author.get("name")) or None
    return None


# ---------------------------------------------------------------------------------------------
# Items
# ---------------------------------------------------------------------------------------------


def _clean_title(title: str, is_html: bool | None) -> str:
    if not title:
        return ""
    if is_html is None:
        is_html = "<" in title or "&" in title
    text = html_to_text(title) if is_html else normalise_text(title)
    return text.replace("\n", " ")[:MAX_TITLE_CHARS]


def _absolute(link: str, base: str | None) -> str:
    if not link or not base or link.startswith(("http://", "https://")):
        return link
    try:
        return urljoin(base, link)
    except ValueError:
        return link


_NO_URL = UrlKeys("", "", "", False)


# Comment feeds title each comment with its byline (WordPress: "By: Name", "Comment on Post by
# Name"; others "Comment by Name", "Reply from Name").
_COMMENT_TITLE = re.compile(
    r"^\s*(?:by:?|(?:comment|reply|response)(?: on .+?)? (?:by|from):?)\s+"
    r"(?P<author>[^\s!?]+(?:\s+[^\s!?]+){0,3})\s*$",
    re.IGNORECASE | re.DOTALL,
)


# "Re: Topic", "RE: Topic", "Re[2]: Topic", "AW: Topic" (German), "SV:" (Nordic), "Antw:" (Dutch).
_REPLY_PREFIX = re.compile(r"^\s*(?:re|aw|sv|antw|vs)(?:\[\d+\]|\^\d+)?\s*:\s*", re.IGNORECASE)
# phpBB feeds title posts "Forum name • Re: Topic".
_FORUM_PREFIX = re.compile(r"^.*\s[•»]\s+(?=\S)")


def _topic_title(title: str) -> tuple[str, bool]:
    """(the topic a title names, folded; whether it is a reply's "Re:" title)."""
    title = _FORUM_PREFIX.sub("", title)
    stripped = _REPLY_PREFIX.sub("", title)
    is_re = stripped != title
    while (again := _REPLY_PREFIX.sub("", stripped)) != stripped:
        stripped = again
    return " ".join(stripped.casefold().split()).strip(" .!?:-"), is_re


def _post_of_topic(link: str) -> tuple[str, str, str] | None:
    """(page, topic id, post id) of a phpBB/vBulletin post link with `?p=` (`t` may be empty)."""
    if not link or "?" not in link:
        return None
    parts = urlsplit(link)
    if not parts.path.endswith(("/viewtopic.php", "/showthread.php")):
        return None
    values = {k.lower(): v for k, v in parse_qsl(parts.query)}
    post = values.get("p", "")
    if not post.isdigit():
        return None
    page = parts.netloc.lower().removeprefix("www.") + parts.path
    return page, values.get("t", ""), post


def _regroup_threads(
    rows: Sequence[tuple[Any, ...]], threads: dict[int, str], source: str
) -> set[int]:
    """Group posts the feed gives no thread markup for into their topics, in place; the rows
    that were regrouped (they are replies).

    A phpBB post linked only by `viewtopic.php?p=POST` joins the topic the feed names for that
    post elsewhere (its guid, or another entry's link: `?t=TOPIC&p=POST`). A "Re: Topic" entry whose thread is only its own page
    joins the entry of this feed titled "Topic", or the other replies of that title.
    """
    regrouped: set[int] = set()
    topics: dict[tuple[str, str], str] = {}
    loose: list[tuple[int, str, str]] = []
    for i, row in enumerate(rows):
        e, keys = row[0], row[4]
        for n, link in enumerate((keys.canonical, e.native_id or "")):
            post = _post_of_topic(link)
            if post is None:
                continue
            page, topic, post_id = post
            if topic:
                topics[(page, post_id)] = threads[i] if n == 0 else url_keys(link).thread_key
            elif n == 0:
                loose.append((i, page, post_id))
    for i, page, post_id in loose:
        if (page, post_id) in topics:
            threads[i] = topics[(page, post_id)]
            regrouped.add(i)

    def own(i: int) -> bool:
        # Only a post whose thread is its own page: a comment anchor (`#comment-N`) or reply
        # markup already says which conversation it belongs to.
        e, keys = rows[i][0], rows[i][4]
        if e.reply_ref or e.reply_href or keys.is_comment:
            return False
        return threads[i] in (keys.identity, rows[i][5])

    roots: dict[str, int] = {}
    replies: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        topic, is_re = _topic_title(row[1])
        if not topic:
            continue
        if is_re:
            if own(i) and i not in regrouped:
                replies.setdefault(topic, []).append(i)
        else:
            roots.setdefault(topic, i)
    for topic, members in replies.items():
        root = roots.get(topic)
        if root is not None:
            key = threads[root]
        elif len(members) >= 2:
            key = f"{source}:re:{topic}"
        else:
            continue
        for i in members:
            threads[i] = key
            regrouped.add(i)
    return regrouped


def _build_items(entries: Sequence[_Entry], *, source: str, base: str | None) -> list[Item]:
    # First pass: every entry's own fields and own keys.
    rows = []
    for e in entries:
        title = _clean_title(e.title, e.title_html)
        text = e.content
        if text:
            text = html_to_text(text) if e.content_html else normalise_text(text)
            text = text[:MAX_TEXT_CHARS]
        link = e.link
        if not link and e.native_id and e.native_id.startswith(("http://", "https://")):
            link = e.native_id  # an Atom id or a guid that is a URL is the best link there is
        link = _absolute(link, base)
        keys = url_keys(link) if link else _NO_URL
        if not (keys.canonical or e.native_id or title or text):
            continue
        if keys.identity:
            own = keys.identity
        elif e.native_id:
            own = f"{source}:{e.native_id}"
        else:
            own = f"{source}:{content_fingerprint(title, text)}"
        rows.append((e, title, text, link, keys, own))

    by_id = {e.native_id: i for i, (e, *_rest) in enumerate(rows) if e.native_id}
    threads: dict[int, str] = {}

    def thread_of(i: int, seen: frozenset[int] = frozenset()) -> str:
        """The thread key of row i; replies to an entry of this feed share that entry's thread."""
        if i in threads:
            return threads[i]
        e, _title, _text, _link, keys, own = rows[i]
        parent = by_id.get(e.reply_ref) if e.reply_ref else None
        if parent is not None and parent != i and parent not in seen:
            key = thread_of(parent, seen | {i})
        elif e.reply_href or e.reply_ref:
            target = _absolute(e.reply_href or e.reply_ref or "", base)
            if target.startswith(("http://", "https://")):
                key = url_keys(target).thread_key
            else:
                key = f"{source}:{e.reply_ref}"
        else:
            key = keys.thread_key or own
            # An aggregator item (HN, Reddit) whose link is the story: its conversation is the
            # discussion page given as <comments>.
            if e.comments_url and not key.startswith(("reddit:", "hn:")):
                discussion = url_keys(_absolute(e.comments_url, base)).thread_key
                if discussion.startswith(("reddit:", "hn:")):
                    key = discussion
        threads[i] = key
        return key

    for i in range(len(rows)):
        thread_of(i)
    regrouped = _regroup_threads(rows, threads, source)

    items = []
    for i, (e, title, text, link, keys, _own) in enumerate(rows):
        thread_key = thread_of(i)
        is_reply = bool(e.reply_ref or e.reply_href)
        parent_key = None
        if is_reply:
            # The parent's native id when the feed names it (thr:in-reply-to ref), else its URL.
            parent_key = e.reply_ref or url_keys(_absolute(e.reply_href or "", base)).identity
        elif keys.is_comment or i in regrouped or (e.native_id or "").startswith("t1_"):
            # A comment whose exact parent the feed does not give: attach it to the thread root.
            is_reply = True
            parent_key = thread_key
        extra = dict(e.extra)
        if e.comments_url:
            extra["comments_url"] = _absolute(e.comments_url, base)
        author = (normalise_text(e.author) or None) if e.author else None
        if is_reply and (byline := _COMMENT_TITLE.match(title)):
            # "By: Rosa" / "Comment on Post by Rosa": a byline, not words the commenter wrote.
            author = author or byline.group("author").strip() or None
            title = ""
        items.append(
            Item(
                source=source,
                native_id=e.native_id,
                url=keys.canonical,
                title=title,
                text=text,
                author=author,
                published_at=parse_datetime(e.published) or parse_datetime(e.updated),
                updated_at=parse_datetime(e.updated),
                thread_key=thread_key,
                parent_key=parent_key,
                is_reply=is_reply,
                thread_url=_absolute(e.replies_url, base) if e.replies_url else None,
                raw_url=link or None,
                extra=extra,
            )
        )
    return items


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def parse_feed(
    body: bytes,
    *,
    source: str,
    url: str,
    content_type: str = "",
    headers: Mapping[str, str] | None = None,
) -> ParsedFeed:
    """Parse one fetched feed body into normalised Items.

    `url` is the URL the body was fetched from (after redirects): relative links resolve against
    the feed's own link, then the Content-Location header, then `url`. `content_type` (or the
    `content-type` header) gives the charset. Raises NotAFeed, with a message saying what the body
    is instead, for empty bodies, HTML pages, sitemaps, OPML and other non-feed documents.
    """
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    content_type = content_type or hdrs.get("content-type", "")
    location = hdrs.get("content-location")
    doc_url = _absolute(location, url) if location else url

    codec, bom = _wide_codec(body)
    if codec:
        body = _to_utf8(body, codec, bom)
        content_type = _CHARSET.sub("", content_type)  # the bytes are UTF-8 now
    elif body.startswith(codecs.BOM_UTF8):
        body = body[len(codecs.BOM_UTF8) :]
    if body[:1].isspace():
        body = body.lstrip()  # an XML declaration after whitespace is an error for expat
    first = body[:1]
    if not first:
        raise NotAFeed("empty body")
    if not body.startswith(b"<?xml"):
        # Output before the XML declaration (a PHP warning, a stray byte) makes parsers give up:
        # the declaration can only come first, so whatever precedes it is junk.
        decl = body.find(b"<?xml", 0, 4096)
        if decl > 0 and body[:decl].strip():
            body = body[decl:]
            first = b"<"
    if first in (b"{", b"["):
        title, json_entries, base, json_notes = _parse_json_feed(body, doc_url)
        items = _build_items(json_entries[:MAX_ITEMS], source=source, base=base)
        return ParsedFeed(
            title=(normalise_text(title) or None) if title else None,
            items=items,
            parser=PARSER_JSON,
            warning="; ".join(json_notes) or None,
            dropped=max(0, len(json_entries) - MAX_ITEMS),
        )

    sniffed = _sniff(body)
    reason = _not_a_feed_reason(sniffed, content_type.lower())
    if reason:
        raise NotAFeed(reason)
    notes: list[str] = []
    if sniffed.doctype:
        body, note = _remove_doctype(body, sniffed.doctype)
        if note:
            notes.append(note)
    at = _first_suspect_amp(body)
    if at >= 0:
        body = _repair_ampersands(body)
        notes.append(f"unescaped '&' or HTML entity at byte {at} escaped")

    parser = PARSER_FAST
    fast: _FeedParts | None = None
    route = _reference_reason(body, sniffed, content_type)
    if route is None:
        fast, route = _parse_fast(body, sniffed)
    if route is None and fast is not None:
        title, feed_link, entries, total = fast
    else:
        log.debug("%s: feedparser because %s", source, route)
        try:
            title, feed_link, entries, total, bozo = _parse_reference(body, content_type, sniffed)
            parser = PARSER_REFERENCE
            if bozo:
                notes.append(bozo)
        except NotAFeed:
            raise
        except Exception as e:  # feedparser has bugs on hostile input (KeyError, chr() range...)
            failure = f"feedparser failed ({type(e).__name__})"  # its text may quote the body
            if fast is None and sniffed.root in ("rss", "feed", "rdf"):
                fast, _ = _parse_fast(body, sniffed)  # second best beats nothing
            if fast is None or not fast[2]:
                raise NotAFeed(f"unreadable feed: {failure}") from e
            log.warning("%s: %s; using fastfeedparser's entries", source, failure)
            title, feed_link, entries, total = fast
            notes.append(failure)
    base = _absolute(feed_link, doc_url) if feed_link else doc_url
    if not base.startswith(("http://", "https://")):
        base = doc_url
    items = _build_items(entries, source=source, base=base)
    return ParsedFeed(
        title=_clean_title(title, None) or None,
        items=items,
        parser=parser,
        warning="; ".join(notes) or None,
        dropped=max(0, total - MAX_ITEMS),
    )


def _parse_fast(body: bytes, sniffed: _Sniffed) -> tuple[_FeedParts | None, str | None]:
    """(title, link, entries) from fastfeedparser, and the reason to use feedparser instead.

    The entries come back even when they are rejected, as a fallback should feedparser fail.
    """
    try:
        result = fastfeedparser.parse(body)
    except Exception as e:  # any failure of the fast path falls back to the reference
        return None, f"fastfeedparser failed: {str(e)[:120]}"
    raw_entries = result.get("entries") or []
    if not raw_entries:
        # Documents it cannot read (RSS 0.90, odd namespaces) come back empty, not as errors.
        expected = _entry_count(body)
        if expected:
            return None, f"fastfeedparser found none of {expected} entries"
    feed = result.get("feed") or {}
    total = len(raw_entries)
    raw_entries = raw_entries[:MAX_ITEMS]
    # fastfeedparser fills a missing id with the link; only a document with ids can have both.
    has_ids = None
    entries = []
    for raw in raw_entries:
        if has_ids is None and raw.get("id") and raw.get("id") == raw.get("link"):
            has_ids = b"<guid" in body or b"<id" in body or b":id>" in body or b":about=" in body
        entries.append(_from_fast(raw, has_ids is not False))
    title = _str(feed.get("title"))
    head = sniffed.head[: sniffed.root_pos + _SMALL_HEAD_BYTES]
    _attach_thread_markup(body, entries, head)
    parts = (title, _str(feed.get("link")), entries, total)
    return parts, _fast_output_problem(body, title, entries)


def _parse_reference(
    body: bytes, content_type: str, sniffed: _Sniffed
) -> tuple[str, str, list[_Entry], int, str | None]:
    """(title, link, entries, how many the document has, bozo reason) from feedparser;
    NotAFeed when it finds no feed."""
    # feedparser is only ever given bytes: a string could make it open a URL or a file. It gets
    # no Content-Location: it would resolve ids like Reddit's "t3_abc" as relative URLs; links
    # are resolved against the document URL in _build_items instead.
    result = feedparser.parse(
        io.BytesIO(body),
        response_headers={"content-type": content_type},
        sanitize_html=False,  # we keep text only; html_to_text drops scripts and styles
        resolve_relative_uris=False,
    )
    entries = result.get("entries") or []
    bozo = str(result.get("bozo_exception") or "")[:200] if result.get("bozo") else None
    if not entries and not result.get("version") and sniffed.root not in FEED_ROOTS:
        raise NotAFeed(
            f"got an XML document with root <{sniffed.root[:40]}>, not a feed"
            + (f" ({bozo})" if bozo else "")
        )
    feed = result.get("feed") or {}
    return (
        _str(feed.get("title")),
        _str(feed.get("link")),
        [_from_reference(e) for e in entries[:MAX_ITEMS]],
        len(entries),
        bozo,
    )
