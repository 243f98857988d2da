"""Find brand and product mentions in text, and cut the text a mention is shown and scored with.

`Matcher.from_brands` compiles every brand's terms, product terms and domains once: a regex per
kind of word boundary (at most five; each an alternation of its terms, longest first, one capture
group per distinct term) and a few prefilter keys (case-folded pieces of the terms: "acme" stands
for "Acme", "Acme Corp" and "@acme"). Most texts name no brand, so `Matcher.match` first looks for
the keys with str.find, a few µs for 1.5 KB, and tries the regexes only where a key was found.

Word boundaries are Unicode-aware: a term that starts or ends with a letter, digit or combining mark
needs a non-word neighbour on that side ("Acme" matches "Acme's", "#acme", "(Acme)", "pre-acme",
"Acme-powered", not "Acmeville", "acme_corp"); a term edge that is punctuation ("@acme", "C++")
needs nothing; scripts written without spaces (CJK, Thai, ...) need no boundary and do not count
as a word neighbour for a Latin term ("我喜欢Acme产品"). Domains ("acme.com", from `Brand.domains`
or a term that looks like one) match case-insensitively with hostname boundaries (a hyphen or a
further ".label" continues a hostname: "not-acme.com" and "acme.com.au" are not acme.com) and
against the host of each link. Matching is case- but not accent-insensitive: list "Nestle" as an
alias of "Nestlé" if people write it so.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from listener import query as q
from listener.jsonlines import read_objects
from listener.lang import detect, normalise, source_language
from listener.models import Brand, Item, Match
from listener.text import split_sentences

log = logging.getLogger(__name__)

# Scripts written without spaces between words: no word boundary is required next to them.
_NO_SPACE = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1100-\u11ff"  # Hangul Jamo
    "\u1780-\u17ff"  # Khmer
    "\u2e80-\u2fff"  # CJK radicals, Kangxi
    "\u3000-\u9fff"  # CJK punctuation, kana, Bopomofo, Hangul compat, CJK ext A, CJK unified
    "\ua000-\ua4cf"  # Yi
    "\ua960-\ua97f"  # Hangul Jamo ext A
    "\uac00-\ud7ff"  # Hangul syllables, Jamo ext B
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff66-\uffdc"  # half-width kana and Hangul
    "\U00020000-\U0003ffff"  # CJK ext B..H
)
_NO_SPACE_RE = re.compile(f"[{_NO_SPACE}]")
# A word character that is not from a no-space script. Marks are added separately (see _marks).
_WORD = f"[^\\W{_NO_SPACE}]"
_APOSTROPHES = "'’ʼ"
_APOSTROPHE_RE = re.compile(f"[{_APOSTROPHES}]")
_SPACE = re.compile(r"\s")
# Something that reads as a hostname: labels of letters/digits/hyphens, an alphabetic last label.
_DOMAIN_RE = re.compile(r"(?:[^\W_](?:[\w-]*[^\W_])?\.)+[^\W\d_]{2,}")


@cache
def _marks() -> str:
    """A character-class body for combining marks outside the no-space scripts.

    `\\w` does not include marks (Python's \\w is str.isalnum), so without this "Cafe" would match
    the NFD spelling of "Café" and a Devanagari term would match inside a longer word. Built once
    (~30 ms) instead of a hand-kept table that would drift from the Unicode database.
    """
    ranges: list[tuple[int, int]] = []
    for cp in (*range(0x300, 0x1F000), *range(0xE0100, 0xE01F0)):
        ch = chr(cp)
        if unicodedata.category(ch)[0] != "M" or _NO_SPACE_RE.match(ch):
            continue
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    return "".join(
        re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
        for a, b in ranges
    )


def _is_wordish(ch: str) -> bool:
    return ch.isalnum() or ch == "_" or unicodedata.category(ch)[0] == "M"


def _needs_boundary(ch: str) -> bool:
    """Whether a term edge `ch` needs a non-word neighbour: letters, digits, marks do, unless from a
    script written without spaces; punctuation ("@acme", "C++") does not."""
    return _is_wordish(ch) and not _NO_SPACE_RE.match(ch)


# Boundary kinds: "" none, "w" word, "d" hostname. The lookarounds hold large Unicode classes
# (~5 ms each to compile), so they are written once per kind around an alternation of all the
# terms of that kind, not once per term.
def _left(kind: str) -> str:
    if kind == "d":
        return f"(?<!{_WORD})(?<![{_marks()}\\-])"
    return f"(?<!{_WORD})(?<![{_marks()}])" if kind == "w" else ""


def _right(kind: str) -> str:
    if kind == "d":
        return f"(?!{_WORD}|[{_marks()}\\-]|\\.(?:{_WORD}|-))"
    return f"(?!{_WORD}|[{_marks()}])" if kind == "w" else ""


def _body(term: str) -> str:
    """The term as a regex, one text character per term character, so that a hit starts exactly
    where its prefilter key was found minus the key's offset: a space matches any one whitespace
    character (NBSP, a line break), an apostrophe any apostrophe ("Macy's" / "Macy’s")."""
    out: list[str] = []
    for ch in term:
        if ch.isspace():
            out.append(r"\s")
        elif ch in _APOSTROPHES:
            out.append(f"[{_APOSTROPHES}]")
        else:
            out.append(re.escape(ch))
    return "".join(out)


def _canon(s: str) -> str:
    """The spelling a case-sensitive term is compared in: whitespace and apostrophes unified."""
    return _APOSTROPHE_RE.sub("'", " ".join(s.split()))


def _looks_like_domain(term: str) -> bool:
    return _DOMAIN_RE.fullmatch(term) is not None


def _normalise_domain(value: str) -> str:
    """'https://www.Acme.com/x' -> 'acme.com' (a link to any subdomain counts: "www." is noise)."""
    host = value.strip().lower()
    if "//" not in host:
        host = "//" + host
    try:
        host = (urlsplit(host).hostname or "").rstrip(".")
    except ValueError:
        return ""
    return host.removeprefix("www.")


def _host_forms(domain: str) -> tuple[str, ...]:
    """The domain as it may appear in a link's host: as written and in IDNA (punycode) form."""
    try:
        ascii_form = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return (domain,)
    return tuple(dict.fromkeys((domain, ascii_form)))


def _prefilter_key(term: str, *, case_sensitive: bool) -> tuple[str, int]:
    """(key, offset): the longest piece of `term` that any text the regex matches must contain
    verbatim (case-folded unless `case_sensitive`), and where it starts in the term.

    The key is cut at whitespace and apostrophes (they vary between term and text), at characters
    whose case fold is not one character (ß, İ: offsets would shift) and at U+0307 (see
    Matcher._candidate_starts). ("", 0) when no character is safe.
    """
    best, best_at = "", 0
    current: list[str] = []
    for i, ch in enumerate((*term, " ")):
        folded = ch if case_sensitive else ch.casefold()
        if ch.isspace() or ch in _APOSTROPHES or len(folded) != 1 or folded == "\u0307":
            if len(current) > len(best):
                best, best_at = "".join(current), i - len(current)
            current = []
        else:
            current.append(folded)
    return best, best_at


@dataclass(frozen=True, slots=True)
class _Owner:
    brand: int  # index into Matcher._names
    product: str | None
    spelling: str | None  # canonical spelling required (case-sensitive owner); None = any case


@dataclass(slots=True)
class _Group:
    """One distinct term (up to case) and every brand/product that lists it."""

    length: int
    domain: bool
    spellings: dict[str, str] = field(default_factory=dict)  # canonical spelling -> term as given
    owners: list[_Owner] = field(default_factory=list)

    @property
    def kind(self) -> tuple[str, str]:
        """Boundary kinds (left, right), see _left/_right."""
        if self.domain:
            return ("d", "d")
        first = next(iter(self.spellings.values()))
        return ("w" if _needs_boundary(first[0]) else "", "w" if _needs_boundary(first[-1]) else "")

    def pattern(self) -> str:
        terms = list(self.spellings.values())
        if any(o.spelling is None for o in self.owners):
            return f"(?i:{_body(terms[0])})"
        return "|".join(_body(t) for t in terms)


@dataclass(frozen=True, slots=True)
class _Hit:
    start: int
    end: int
    text: str
    owners: tuple[_Owner, ...]


# A prefilter key and the offsets, within the terms it stands for, at which it occurs.
_Keys = tuple[tuple[str, tuple[int, ...]], ...]


@dataclass(frozen=True, slots=True)
class _Phrase:
    """One exclude phrase. Its word boundaries are checked in Python (see _needs_boundary):
    exclusions are only looked at around a hit, and this avoids compiling the large boundary
    classes once more per brand."""

    pattern: re.Pattern[str]
    length: int
    left: bool
    right: bool
    text: str = ""

    def covers(self, text: str, start: int, end: int) -> bool:
        """Whether an occurrence of the phrase contains text[start:end]."""
        for pos in range(max(0, end - self.length), start + 1):
            m = self.pattern.match(text, pos)
            if (
                m is not None
                and m.end() >= end
                and not (self.left and pos > 0 and _needs_boundary(text[pos - 1]))
                and not (self.right and m.end() < len(text) and _needs_boundary(text[m.end()]))
            ):
                return True
        return False


# --- queries -------------------------------------------------------------------------------------

# Links written in text: their words do not name a brand (`?partner=globex`), a domain term aside.
# A link is a whitespace-delimited token with a scheme, "www." or a host followed by a path; the
# tokens are found from their "/" and "www." (str.find), so text without links costs two finds.
_URL_TOKEN_RE = re.compile(
    r"[a-z][a-z0-9+.-]*://|www\.|(?:[^\W_][\w-]*\.)+[a-z]{2,}/",
    re.IGNORECASE,
)
_URL_BREAK = frozenset("<>\"'")
# Words, for NEAR/n distances: letters and digits, with inner apostrophes ("Linear's" is one word).
_WORD_RE = re.compile(r"[^\W_]+(?:['’ʼ][^\W_]+)*")


@dataclass(frozen=True, slots=True)
class Context:
    """What a query can look at besides the text: the text starts with a title of `title_end`
    characters (an item's text is "title\\ntext"), and the item's URL, author, source and language."""

    title_end: int = 0
    url: str = ""
    author: str | None = None
    source: str | None = None
    lang: str | None = None


def item_text(item: Item) -> str:
    """The text an item is matched in: its title, a line break, its text."""
    return f"{item.title}\n{item.text}" if item.title else item.text


def item_context(item: Item) -> Context:
    """An item's context; its language is the source's, or detected when a `lang:` asks."""
    return Context(
        title_end=len(item.title),
        url=item.url,
        author=item.author,
        source=item.source,
        lang=source_language(item),
    )


def _url_spans(text: str) -> list[tuple[int, int]]:
    """Where links written in the text are (start, end)."""
    spans: list[tuple[int, int]] = []
    n = len(text)
    for marker in ("/", "www."):
        at = text.find(marker)
        while at != -1:
            a = at
            while a > 0 and not text[a - 1].isspace() and text[a - 1] not in _URL_BREAK:
                a -= 1
            b = at
            while b < n and not text[b].isspace() and text[b] not in _URL_BREAK:
                b += 1
            while a < at and not text[a].isalnum():
                a += 1  # "(https://..." : the link starts after the bracket
            if not any(x <= a < y for x, y in spans) and _URL_TOKEN_RE.match(text, a, b):
                spans.append((a, b))
            at = text.find(marker, b)
    return spans


def _inside(spans: Sequence[tuple[int, int]], start: int, end: int) -> bool:
    return any(a <= start and end <= b for a, b in spans)


@dataclass(frozen=True, slots=True, eq=False)  # hashed by identity: one per distinct word
class _QWord:
    """A query word compiled: a cheap regex (no lookarounds) and the boundaries checked in Python."""

    word: q.Word
    pattern: re.Pattern[str]
    left: bool
    right: bool
    domain: bool

    key: str  # folded piece the text must contain where the word starts `offset` before
    offset: int

    @classmethod
    def compile(cls, word: q.Word) -> _QWord:
        text = unicodedata.normalize("NFC", word.text)
        domain = not word.phrase and word.scope is None and _looks_like_domain(text)
        body = r"\s+".join(map(_body, text.split())) if word.phrase else _body(text)
        if word.prefix:
            body += r"\w*"
        flags = 0 if word.exact_case else re.IGNORECASE
        # Phrases match any run of whitespace: offsets of pieces after the first would shift.
        first = text.split()[0] if word.phrase else text
        key, offset = _prefilter_key(first, case_sensitive=False)
        return cls(
            word,
            re.compile(body, flags),
            left=domain or _needs_boundary(text[0]),
            right=domain or _needs_boundary(text[-1]) or word.prefix,
            domain=domain,
            key=key,
            offset=offset,
        )

    def _starts(self, s: str, folded: str | None) -> Iterator[re.Match[str]]:
        """Every regex match, found from the folded key with str.find where offsets allow."""
        if folded is None or not self.key or len(folded) != len(s):
            pos = 0
            while (m := self.pattern.search(s, pos)) is not None:
                yield m
                pos = m.start() + 1
            return
        at = folded.find(self.key)
        while at != -1:
            start = at - self.offset
            if start >= 0 and (m := self.pattern.match(s, start)) is not None:
                yield m
            at = folded.find(self.key, at + 1)

    def find(self, s: str, folded: str | None = None) -> list[tuple[int, int]]:
        """Where the word occurs in `s` (`folded`: s.casefold(), to find it faster)."""
        out: list[tuple[int, int]] = []
        n = len(s)
        last = -1
        for m in self._starts(s, folded):
            a, b = m.span()
            if a < last:
                continue  # inside the previous occurrence
            ok = True
            if self.left and a > 0:
                ch = s[a - 1]
                ok = not (_needs_boundary(ch) or (self.domain and ch == "-"))
            if ok and self.right and b < n:
                ch = s[b]
                ok = not _needs_boundary(ch) and not (
                    self.domain
                    and (ch == "-" or (ch == "." and b + 1 < n and _is_wordish(s[b + 1])))
                )
            if ok:
                out.append((a, b))
                last = b
        return out


class _Doc:
    """One text (and its context) as the queries see it; occurrences are looked up once each."""

    __slots__ = ("_folded", "_hosts", "_lang", "_occ", "_urls", "ctx", "links", "text")

    def __init__(self, text: str, ctx: Context, links: Sequence[str]) -> None:
        self.text = text
        self._folded: str | None = None
        self.ctx = ctx
        self.links = links
        self._occ: dict[int, list[tuple[int, int]]] = {}
        self._urls: list[tuple[int, int]] | None = None
        self._hosts: list[str] | None = None
        self._lang: str | None = ""

    def lang(self) -> str | None:
        """The context's language, else the text's, detected once (None: too short to tell)."""
        if self._lang == "":
            self._lang = normalise(self.ctx.lang) or detect(self.text)
        return self._lang

    @property
    def urls(self) -> list[tuple[int, int]]:
        if self._urls is None:
            self._urls = _url_spans(self.text)
        return self._urls

    def site(self) -> str:
        """The host the item was posted on, without "www."."""
        return _link_host(self.ctx.url).lower().removeprefix("www.") if self.ctx.url else ""

    def link_hosts(self) -> list[str]:
        if self._hosts is None:
            self._hosts = [h for h in (_link_host(x).lower() for x in self.links) if h]
        return self._hosts

    @property
    def folded(self) -> str:
        if self._folded is None:
            self._folded = self.text.casefold()
        return self._folded

    def occurrences(self, qw: _QWord) -> list[tuple[int, int]]:
        """Where a text word occurs (not inside a link unless it is a domain; `title:` only in
        the title)."""
        found = self._occ.get(id(qw))
        if found is None:
            found = qw.find(self.text, self.folded)
            if found and not qw.domain and self.urls:
                found = [s for s in found if not _inside(self.urls, *s)]
            if qw.word.scope == "title":
                found = [s for s in found if s[1] <= self.ctx.title_end]
            self._occ[id(qw)] = found
        return found

    def words_between(self, start: int, end: int, limit: int) -> int:
        """How many words text[start:end] holds, counted up to limit + 1 (for NEAR/n); a
        possessive right after the first occurrence ("Linear's") is part of it."""
        text = self.text
        if start < end and text[start] in _APOSTROPHES:
            while start < end and (text[start] in _APOSTROPHES or _is_wordish(text[start])):
                start += 1
        count = 0
        for _ in _WORD_RE.finditer(text, start, end):
            count += 1
            if count > limit:
                break
        return count


def _domain_of(value: str) -> str:
    return _normalise_domain(value)


class _Query:
    """One brand's (or product's) query compiled, evaluated against a _Doc."""

    def __init__(
        self,
        node: q.Node,
        source: str,
        excludes: tuple[_Phrase, ...],
        interned: dict[q.Word, _QWord] | None = None,
    ) -> None:
        self.node = node
        self.source = source
        interned = {} if interned is None else interned
        # Keyed by the tree's own Word objects (identity: no dataclass hashing per item).
        self.qwords: dict[int, _QWord] = {}
        # Only exclude phrases that contain a word can cover an occurrence of it.
        self.excludes: dict[int, tuple[_Phrase, ...]] = {}
        for w, _ in q.words(node):
            qw = interned.get(w)
            if qw is None:
                qw = interned[w] = _QWord.compile(w)
            self.qwords[id(w)] = qw
            folded = w.text.casefold()
            covering = tuple(p for p in excludes if folded in p.text.casefold())
            if covering:
                self.excludes[id(w)] = covering
        self.positive = q.positive_words(node)

    def occ(self, word: q.Word, doc: _Doc) -> list[tuple[int, int]]:
        found = doc.occurrences(self.qwords[id(word)])
        excludes = self.excludes.get(id(word))
        if found and excludes:
            text = doc.text
            found = [s for s in found if not any(p.covers(text, *s) for p in excludes)]
        return found

    def _scoped(self, w: q.Word, doc: _Doc) -> bool:
        ctx = doc.ctx
        value = w.text.casefold()
        if w.scope == "site":
            want, host = _domain_of(w.text), doc.site()
            return bool(host) and (host == want or host.endswith("." + want))
        if w.scope == "author":
            author = (ctx.author or "").casefold().lstrip("@")
            return bool(author) and (
                author == value.lstrip("@") or bool(self.qwords[id(w)].find(author))
            )
        if w.scope == "source":
            return (ctx.source or "").casefold() == value
        lang = doc.lang() or ""
        return bool(lang) and (lang == value or lang.startswith(value + "-"))

    def _word_holds(self, w: q.Word, doc: _Doc) -> bool:
        if w.scope in q.TEXT_SCOPES:
            if self.occ(w, doc):
                return True
            qw = self.qwords[id(w)]
            if qw.domain and w.scope is None:
                want = _domain_of(w.text)
                return any(h == want or h.endswith("." + want) for h in doc.link_hosts())
            return False
        return self._scoped(w, doc)

    def _spans(self, node: q.Node, doc: _Doc) -> list[tuple[int, int]]:
        if isinstance(node, q.Word):
            return self.occ(node, doc)
        assert isinstance(node, q.Or)
        return sorted(s for p in node.parts for s in self._spans(p, doc))

    def _near(self, node: q.Near, doc: _Doc) -> tuple[tuple[int, int], tuple[int, int]] | None:
        left = self._spans(node.left, doc)
        if not left:
            return None
        right = self._spans(node.right, doc)
        for a in left:
            for b in right:
                first, second = (a, b) if a[0] <= b[0] else (b, a)
                if first[1] > second[0]:
                    continue  # overlapping: the same words
                if doc.words_between(first[1], second[0], node.distance) <= node.distance:
                    return a, b
        return None

    def holds(self, doc: _Doc, node: q.Node | None = None) -> bool:
        node = self.node if node is None else node
        if isinstance(node, q.Word):
            return self._word_holds(node, doc)
        if isinstance(node, q.And):
            return all(self.holds(doc, p) for p in node.parts)
        if isinstance(node, q.Or):
            return any(self.holds(doc, p) for p in node.parts)
        if isinstance(node, q.Not):
            return not self.holds(doc, node.part)
        return self._near(node, doc) is not None

    def anchors(self, doc: _Doc) -> list[tuple[int, int]]:
        """Where the query's positive words occur: the spans a mention's snippet is cut around."""
        return sorted({s for w in self.positive for s in self.occ(w, doc)})

    def found_positive(self, doc: _Doc) -> bool:
        return any(self.occ(w, doc) for w in self.positive)

    def excluded(self, doc: _Doc) -> list[tuple[str, str]]:
        """(word as written, exclude phrase) for positive words found only inside an exclusion."""
        out = []
        for w in self.positive:
            for a, b in doc.occurrences(self.qwords[id(w)]):
                phrase = next(
                    (p for p in self.excludes.get(id(w), ()) if p.covers(doc.text, a, b)), None
                )
                if phrase is not None:
                    out.append((doc.text[a:b], phrase.text))
        return out

    def explain(self, doc: _Doc, node: q.Node | None = None) -> tuple[bool, str]:
        """Whether the query holds and, in words, which part made it so."""
        node = self.node if node is None else node
        if isinstance(node, q.Word):
            ok = self._word_holds(node, doc)
            shown = q.describe(node)
            if node.scope in q.TEXT_SCOPES:
                seen = list(dict.fromkeys(doc.text[a:b] for a, b in self.occ(node, doc)))
                if ok and seen:
                    return True, f"{shown} found ({', '.join(repr(x) for x in seen)})"
                if ok:
                    return True, f"{shown} linked"
                return False, f"no {shown}"
            return ok, shown if ok else f"not {shown}"
        if isinstance(node, q.And):
            parts = [self.explain(doc, p) for p in node.parts]
            failed = [why for ok, why in parts if not ok]
            if failed:
                return False, failed[0]
            return True, "; ".join(why for _, why in parts)
        if isinstance(node, q.Or):
            parts = [self.explain(doc, p) for p in node.parts]
            held = [why for ok, why in parts if ok]
            if held:
                return True, held[0]
            return False, "; ".join(why for _, why in parts)
        if isinstance(node, q.Not):
            ok, why = self.explain(doc, node.part)
            if ok:
                inner = q.describe(node.part)
                if isinstance(node.part, q.And | q.Or | q.Near):
                    inner = f"({inner})"
                return False, f"NOT {inner} dropped it: {why}"
            return True, why
        pair = self._near(node, doc)
        if pair is None:
            return False, f"not {q.describe(node)}"
        (a, b), text = pair, doc.text
        return True, f"{text[a[0] : a[1]]!r} within {node.distance} words of {text[b[0] : b[1]]!r}"


def _requirement(node: q.Node) -> frozenset[str] | None:
    """Folded pieces of which at least one must be in the text for `node` to hold; None when
    nothing can be said without evaluating it (a NOT, a scope other than the text)."""
    if isinstance(node, q.Word):
        if node.scope not in q.TEXT_SCOPES:
            return None
        key, _ = _prefilter_key(node.text, case_sensitive=False)
        return frozenset((key,)) if key else None
    if isinstance(node, q.And):
        options = [r for r in map(_requirement, node.parts) if r is not None]
        return min(options, key=lambda r: (len(r), -min(map(len, r)))) if options else None
    if isinstance(node, q.Or):
        out: set[str] = set()
        for part in node.parts:
            r = _requirement(part)
            if r is None:
                return None
            out |= r
        return frozenset(out)
    if isinstance(node, q.Near):
        return _requirement(q.And((node.left, node.right)))
    return None


@dataclass(frozen=True, slots=True)
class _Rules:
    """A brand's queries: its own (a gate on every mention of it) and its products'."""

    query: _Query | None
    alone: bool  # the brand has no terms: its query alone makes a mention
    products: tuple[tuple[str, _Query, bool], ...]  # (product, query, product has terms)

    def product_query(self, name: str) -> _Query | None:
        return next((pq for p, pq, _ in self.products if p == name), None)


def _compile_rules(
    brand: Brand, excludes: tuple[_Phrase, ...], interned: dict[q.Word, _QWord]
) -> _Rules | None:
    def compiled(text: str, what: str) -> _Query:
        try:
            node = q.parse(text)
        except q.QueryError as exc:
            raise ValueError(f"{what}: query: {exc}") from None
        return _Query(node, text, excludes, interned)

    own = compiled(brand.query, f"brand {brand.name!r}") if brand.query else None
    products = tuple(
        (p.name, compiled(p.query, f"product {p.name!r} of brand {brand.name!r}"), bool(p.terms))
        for p in brand.products
        if p.query
    )
    if own is None and not products:
        return None
    return _Rules(own, alone=not brand.terms and not brand.domains, products=products)


@dataclass(slots=True)
class Explained:
    """`Matcher.explain`: the mentions with why they matched, and why-nots for brands whose term
    (or query word) was found but a rule dropped it."""

    mentions: list[tuple[Match, str]] = field(default_factory=list)
    why_not: list[dict[str, object]] = field(default_factory=list)


class Matcher:
    """Every configured brand compiled once; `match` is a pure function of text and links.

    How a text is searched: each prefilter key is looked for with str.find (in the case-folded
    text for case-insensitive terms); a text without any costs only that. Every occurrence of a key
    gives the exact start of the term(s) it stands for (terms match one text character per term
    character), and the regex is tried only there (`regex.match(text, start)` returns the longest
    term at that start). If case folding changed the text's length (ß, İ), offsets do not carry
    over and the regex scans the whole text instead.
    """

    def __init__(
        self,
        names: tuple[str, ...],
        regexes: tuple[tuple[re.Pattern[str], tuple[_Group, ...]], ...],
        excludes: tuple[tuple[_Phrase, ...], ...],
        fold_keys: _Keys,
        exact_keys: _Keys,
        always_scan: bool,
        link_domains: dict[str, tuple[int, ...]],
        neutral: dict[str, tuple[str, ...]],
        rules: dict[int, _Rules] | None = None,
    ) -> None:
        # Use from_brands(); the constructor only stores what it compiled.
        rules = rules or {}
        self._rules = rules
        # Brands a query can name without a term: which folded pieces make them worth a look.
        keyed: dict[str, list[int]] = {}
        always: list[int] = []
        for index, r in rules.items():
            entries = [r.query.node] if r.alone and r.query else []
            entries += [pq.node for _, pq, has_terms in r.products if not has_terms]
            need = _requirement(q.Or(tuple(entries))) if entries else frozenset()
            if need is None:
                always.append(index)
            for key in need or ():
                keyed.setdefault(key, []).append(index)
        self._query_keys = tuple((k, tuple(v)) for k, v in keyed.items())
        self._query_always = tuple(always)
        self._names = names
        self._regexes = regexes
        self._excludes = excludes
        self._fold_keys = fold_keys
        self._exact_keys = exact_keys
        self._always_scan = always_scan
        self._link_domains = link_domains
        self._neutral = neutral

    @classmethod
    def from_brands(cls, brands: Sequence[Brand]) -> Matcher:
        names = tuple(b.name for b in brands)
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"brand names must be unique; repeated: {', '.join(dupes)}")

        groups: dict[tuple[str, bool], _Group] = {}
        fold_keys: dict[str, set[int]] = {}
        exact_keys: dict[str, set[int]] = {}
        always_scan = False
        link_domains: dict[str, list[int]] = {}
        neutral: dict[str, tuple[str, ...]] = {}

        def add(term: str, owner_brand: int, product: str | None, *, cs: bool, dom: bool) -> None:
            nonlocal always_scan
            # Text may arrive in NFC or NFD; both spellings are compiled so either matches.
            for variant in dict.fromkeys(
                (unicodedata.normalize("NFC", term), unicodedata.normalize("NFD", term))
            ):
                canon = _canon(variant)
                group = groups.setdefault(
                    (canon.lower(), dom), _Group(length=len(canon), domain=dom)
                )
                group.spellings.setdefault(canon, variant)
                owner = _Owner(owner_brand, product, canon if cs else None)
                if owner not in group.owners:
                    group.owners.append(owner)
                key, offset = _prefilter_key(variant, case_sensitive=cs)
                if not key:
                    always_scan = True
                else:
                    (exact_keys if cs else fold_keys).setdefault(key, set()).add(offset)

        excludes: list[tuple[_Phrase, ...]] = []
        rules: dict[int, _Rules] = {}
        interned: dict[q.Word, _QWord] = {}  # one compiled word for all queries that use it
        for index, brand in enumerate(brands):
            cs = brand.case_sensitive
            entries: list[tuple[str, str | None]] = [(t, None) for t in brand.terms]
            for product in brand.products:
                entries += [(t, product.name) for t in product.terms]
            for raw, product_name in entries:
                term = " ".join(raw.split())
                if not term:
                    where = f"product {product_name!r} of " if product_name else ""
                    raise ValueError(f"{where}brand {brand.name!r} has an empty term")
                if _looks_like_domain(term):
                    # Hostnames are case-insensitive whatever the brand's setting.
                    add(term, index, product_name, cs=False, dom=True)
                    link_domains.setdefault(_normalise_domain(term), []).append(index)
                else:
                    add(term, index, product_name, cs=cs, dom=False)
            for raw in brand.domains:
                domain = _normalise_domain(raw)
                if not _looks_like_domain(domain):
                    raise ValueError(f"brand {brand.name!r}: {raw!r} is not a domain")
                add(domain, index, None, cs=False, dom=True)
                link_domains.setdefault(domain, []).append(index)
            excludes.append(_compile_exclusions(brand.exclude, case_sensitive=cs))
            brand_rules = _compile_rules(brand, excludes[-1], interned)
            if brand_rules is not None:
                rules[index] = brand_rules
            neutral[brand.name] = tuple(
                dict.fromkeys(
                    [brand.name, *brand.terms, *brand.domains]
                    + [x for p in brand.products for x in (p.name, *p.terms)]
                )
            )

        by_kind: dict[tuple[str, str], list[_Group]] = {}
        for group in sorted(groups.values(), key=lambda g: -g.length):  # stable: config order
            by_kind.setdefault(group.kind, []).append(group)
        regexes = []
        for (left, right), kind_groups in by_kind.items():
            alternation = "|".join(f"({g.pattern()})" for g in kind_groups)
            pattern = re.compile(f"{_left(left)}(?:{alternation}){_right(right)}")
            regexes.append((pattern, tuple(kind_groups)))
        fold, exact = _minimal_keys(fold_keys, exact_keys)
        by_host: dict[str, tuple[int, ...]] = {}
        for domain, owners in link_domains.items():
            for form in _host_forms(domain):
                by_host[form] = tuple(dict.fromkeys(by_host.get(form, ()) + tuple(owners)))
        log.debug(
            "compiled %d brands: %d distinct terms, prefilter keys %s%s",
            len(names),
            len(groups),
            [k for k, _ in fold + exact],
            " (some terms have no usable key: every text is scanned)" if always_scan else "",
        )
        return cls(
            names=names,
            regexes=tuple(regexes),
            excludes=tuple(excludes),
            fold_keys=fold,
            exact_keys=exact,
            always_scan=always_scan,
            link_domains=by_host,
            neutral=neutral,
            rules=rules,
        )

    @property
    def brand_names(self) -> tuple[str, ...]:
        return self._names

    def neutral_terms(self, brand: str) -> tuple[str, ...]:
        """The brand's name, terms and domains and its products' names and terms, as configured:
        words the sentiment scorer must not score ("Joy", "Best Buy" are names here)."""
        try:
            return self._neutral[brand]
        except KeyError:
            known = ", ".join(self._names)
            raise KeyError(f"unknown brand {brand!r}; configured: {known}") from None

    def match(
        self, text: str, *, links: Sequence[str] = (), context: Context | None = None
    ) -> list[Match]:
        """One Match per brand named in `text` (by term, product term or domain) or linked to in
        `links`, or whose query holds, in order of first appearance in the text; link-only brands
        come last (no spans, the linked domain as their term). `context` is what `title:`,
        `site:`, `author:`, `source:` and `lang:` look at."""
        return self._run(text, links, context, None)

    def match_item(self, item: Item) -> list[Match]:
        """`match` over an item: its title and text (spans are offsets in `item_text(item)`)."""
        return self._run(item_text(item), (), None, None, item)

    def explain(
        self, text: str, *, links: Sequence[str] = (), context: Context | None = None
    ) -> Explained:
        """`match`, with why each brand matched, and why not where a term or a query's word was
        found but an exclusion, a link or the query dropped it."""
        out = Explained()
        self._run(text, links, context, out)
        return out

    def _run(
        self,
        text: str,
        links: Sequence[str],
        context: Context | None,
        explained: Explained | None,
        item: Item | None = None,
    ) -> list[Match]:
        dropped: list[tuple[int, list[str], str]] | None = [] if explained is not None else None
        hits = self._find(text, dropped) if text and self._regexes else []
        linked = self._linked(links) if links else {}
        rules = self._rules
        if not hits and not linked and not rules:
            return []

        spans: dict[int, list[tuple[int, int]]] = {}
        terms: dict[int, dict[str, None]] = {}
        product: dict[int, str | None] = {}
        why: dict[int, list[str]] = {}
        doc: _Doc | None = None

        def document() -> _Doc:
            nonlocal doc
            if doc is None:
                ctx = context or (item_context(item) if item is not None else Context())
                doc = _Doc(text, ctx, links)
            return doc

        for hit in hits:
            for owner in hit.owners:
                if owner.product is not None and owner.brand in rules:
                    pq = rules[owner.brand].product_query(owner.product)
                    if pq is not None and not pq.holds(document()):
                        if dropped is not None:
                            reason = pq.explain(document())[1]
                            dropped.append(
                                (owner.brand, [hit.text], f"product {owner.product}: {reason}")
                            )
                        continue
                brand_spans = spans.setdefault(owner.brand, [])
                if not brand_spans or brand_spans[-1] != (hit.start, hit.end):
                    brand_spans.append((hit.start, hit.end))
                terms.setdefault(owner.brand, {})[hit.text] = None
                if product.get(owner.brand) is None:
                    product[owner.brand] = owner.product
        for brand, domains in linked.items():
            seen = {t.casefold() for t in terms.get(brand, {})}
            for domain in domains:
                if domain not in seen:
                    terms.setdefault(brand, {})[domain] = None
            spans.setdefault(brand, [])
        if explained is not None:
            for b in spans:
                why[b] = [f"named by {', '.join(map(repr, terms[b]))}"]

        if rules:
            self._apply_rules(document, spans, terms, product, why, dropped)

        if explained is not None and dropped:
            for b, written, reason in dropped:
                if b not in spans:
                    explained.why_not.append(
                        {"brand": self._names[b], "terms": written, "why": reason}
                    )
        order = sorted(spans, key=lambda b: spans[b][0][0] if spans[b] else len(text) + 1)
        matches = [
            Match(
                brand=self._names[b],
                product=product.get(b),
                terms=tuple(terms[b]),
                spans=tuple(spans[b]),
            )
            for b in order
        ]
        if explained is not None:
            explained.mentions = [
                (m, "; ".join(why[b])) for m, b in zip(matches, order, strict=True)
            ]
        return matches

    def _apply_rules(
        self,
        document: Callable[[], _Doc],
        spans: dict[int, list[tuple[int, int]]],
        terms: dict[int, dict[str, None]],
        product: dict[int, str | None],
        why: dict[int, list[str]],
        dropped: list[tuple[int, list[str], str]] | None,
    ) -> None:
        """Queries: a gate on brands named by a term, and a mention on their own for brands (or
        products) without terms. Only brands with a query get here, and only those named by a
        term or whose query words' pieces are in the text are evaluated."""
        explain = dropped is not None
        candidates: set[int] = set(self._query_always)
        if self._query_keys:
            text = document().text
            folded = document().folded
            if len(folded) != len(text):
                folded = folded.replace("\u0307", "")
            candidates.update(b for key, bs in self._query_keys if key in folded for b in bs)
        for b, r in self._rules.items():
            named = b in spans
            if not named and b not in candidates:
                continue
            doc = document()
            if r.query is not None and (named or r.alone):
                if explain:
                    held, reason = r.query.explain(doc)
                else:
                    held, reason = r.query.holds(doc), ""
                if not held:
                    if named:
                        found = list(terms.pop(b))
                        del spans[b]
                        product.pop(b, None)
                        why.pop(b, None)
                        if dropped is not None:
                            dropped.append((b, found, f"the query did not hold: {reason}"))
                    elif dropped is not None and r.query.found_positive(doc):
                        words = list(dict.fromkeys(doc.text[x:y] for x, y in r.query.anchors(doc)))
                        dropped.append((b, words, f"the query did not hold: {reason}"))
                    elif dropped is not None and (excluded := r.query.excluded(doc)):
                        phrases = ", ".join(dict.fromkeys(repr(p) for _, p in excluded))
                        words = list(dict.fromkeys(w for w, _ in excluded))
                        dropped.append((b, words, f"inside the excluded phrase {phrases}"))
                    continue
                if not named:
                    anchors = r.query.anchors(doc)
                    spans[b] = anchors
                    terms[b] = dict.fromkeys(doc.text[x:y] for x, y in anchors)
                    if not terms[b]:
                        terms[b] = {q.describe(r.query.node): None}
                    product[b] = None
                    named = True
                if explain:
                    why.setdefault(b, []).append(f"query held: {reason}")
            if product.get(b) is not None:
                continue
            for name, pq, has_terms in r.products:
                if has_terms:
                    continue  # named by its terms (checked with them) or not at all
                if not pq.holds(doc):
                    continue
                if not named and r.query is not None and not r.query.holds(doc):
                    continue  # the brand's own query is a gate on its products too
                anchors = pq.anchors(doc)
                if not named:
                    spans[b] = anchors
                    terms[b] = dict.fromkeys(doc.text[x:y] for x, y in anchors)
                    if not terms[b]:
                        terms[b] = {q.describe(pq.node): None}
                    named = True
                else:
                    spans[b] = sorted({*spans[b], *anchors})
                    for x, y in anchors:
                        terms[b][doc.text[x:y]] = None
                product[b] = name
                if explain:
                    why.setdefault(b, []).append(
                        f"product {name}: query held: {pq.explain(doc)[1]}"
                    )
                break

    def _candidate_starts(self, text: str) -> set[int] | None:
        """Where a term may start; None: scan the whole text."""
        starts: set[int] = set()
        for key, offsets in self._exact_keys:
            at = text.find(key)
            while at != -1:
                starts.update(at - o for o in offsets)
                at = text.find(key, at + 1)
        if not self._fold_keys:
            return starts
        folded = text.casefold()
        if len(folded) != len(text):
            # Offsets no longer line up. casefold("İ") is "i" + U+0307 where the regex (simple
            # case folding) matches "İ" to "i"; keys never hold U+0307, so dropping it only
            # makes the probe more permissive.
            folded = folded.replace("\u0307", "")
            hit = any(key in folded for key, _ in self._fold_keys)
            return None if hit else starts
        for key, offsets in self._fold_keys:
            at = folded.find(key)
            while at != -1:
                starts.update(at - o for o in offsets)
                at = folded.find(key, at + 1)
        return starts

    def _find(
        self, text: str, dropped: list[tuple[int, list[str], str]] | None = None
    ) -> list[_Hit]:
        """Non-overlapping hits, longest first where two overlap, then in text order. A term
        inside a link does not count unless it is a domain; `dropped` collects (brand, term,
        why) for the hits that an exclusion or a link dropped."""
        starts = None if self._always_scan else self._candidate_starts(text)
        urls: list[tuple[int, int]] | None = None
        if starts is None:
            starts = self._scan_starts(text)
        candidates: list[_Hit] = []
        for start in sorted(starts):
            if start < 0:
                continue
            # The longest term starting here: each regex gives its longest, the longest of those.
            best: tuple[re.Match[str], _Group] | None = None
            for regex, groups in self._regexes:
                m = regex.match(text, start)
                if m is not None and (best is None or m.end() > best[0].end()):
                    best = (m, groups[(m.lastindex or 1) - 1])  # one group per alternative
            if best is None:
                continue
            m, group = best
            written = m.group()
            canon = _canon(written) if any(o.spelling for o in group.owners) else written
            if not group.domain:
                if urls is None:
                    urls = _url_spans(text)
                if urls and _inside(urls, m.start(), m.end()):
                    if dropped is not None:
                        dropped.extend(
                            (o.brand, [written], "found only inside a link")
                            for o in group.owners
                            if o.spelling is None or o.spelling == canon
                        )
                    continue
            owners_list: list[_Owner] = []
            for o in group.owners:
                if o.spelling is not None and o.spelling != canon:
                    continue
                phrase = next(
                    (p for p in self._excludes[o.brand] if p.covers(text, m.start(), m.end())),
                    None,
                )
                if phrase is None:
                    owners_list.append(o)
                elif dropped is not None:
                    dropped.append(
                        (o.brand, [written], f"inside the excluded phrase {phrase.text!r}")
                    )
            owners = tuple(owners_list)
            if owners:
                candidates.append(_Hit(m.start(), m.end(), written, owners))
        if len(candidates) > 1:
            candidates.sort(key=lambda h: (h.start - h.end, h.start))
            kept: list[_Hit] = []
            for hit in candidates:
                if all(hit.end <= k.start or hit.start >= k.end for k in kept):
                    kept.append(hit)
            candidates = sorted(kept, key=lambda h: h.start)
        return candidates

    def _scan_starts(self, text: str) -> set[int]:
        """Every position where some term may start, found by scanning the whole text: each
        regex's hits and every position inside them (finditer resumes after a hit, so a longer
        term starting inside one, "Big Acme" / "Acme Rocket Skates", would go unseen; no term
        starts between hits, or finditer would have returned it)."""
        starts: set[int] = set()
        for regex, _ in self._regexes:
            for m in regex.finditer(text):
                starts.update(range(m.start(), max(m.end(), m.start() + 1)))
        return starts

    def _linked(self, links: Sequence[str]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for link in links:
            host = _link_host(link)
            while host:
                for brand in self._link_domains.get(host, ()):
                    if host not in out.setdefault(brand, []):
                        out[brand].append(host)
                _, _, host = host.partition(".")
        return out


def _link_host(link: str) -> str:
    link = link.strip()
    if "//" not in link:
        link = "//" + link  # "acme.com/x" as written in a post
    try:
        host = urlsplit(link).hostname or ""
    except ValueError:  # e.g. an invalid IPv6 literal: not a link to anyone's brand
        return ""
    return host.rstrip(".")


def _compile_exclusions(raw: Sequence[str], *, case_sensitive: bool) -> tuple[_Phrase, ...]:
    phrases = {unicodedata.normalize(f, " ".join(p.split())) for p in raw for f in ("NFC", "NFD")}
    flags = 0 if case_sensitive else re.IGNORECASE
    return tuple(
        _Phrase(
            pattern=re.compile(_body(phrase), flags),
            length=len(phrase),
            left=_needs_boundary(phrase[0]),
            right=_needs_boundary(phrase[-1]),
            text=phrase,
        )
        for phrase in sorted(phrases - {""})
    )


def _minimal_keys(fold: dict[str, set[int]], exact: dict[str, set[int]]) -> tuple[_Keys, _Keys]:
    """Fewer probes: a key containing a shorter key is replaced by it, offsets shifted ("acme corp"
    at 0 and "@acme" at 1 both become "acme", at 0 and 1)."""
    fold_min: dict[str, set[int]] = {
        k: set() for k in fold if not any(o != k and o in k for o in fold)
    }
    for key, offsets in fold.items():
        short = next(o for o in fold_min if o in key)
        fold_min[short].update(off + key.index(short) for off in offsets)
    exact_min: dict[str, set[int]] = {}
    for key in sorted(exact, key=len):
        folded = key.casefold()
        # Only when folding keeps offsets: then the fold probe finds this key's hits too.
        covering = (
            next((o for o in fold_min if o in folded), None) if len(folded) == len(key) else None
        )
        if covering is not None:
            fold_min[covering].update(off + folded.index(covering) for off in exact[key])
            continue
        shorter = next((o for o in exact_min if o in key), None)
        if shorter is not None:
            exact_min[shorter].update(off + key.index(shorter) for off in exact[key])
        else:
            exact_min[key] = set(exact[key])

    def freeze(keys: dict[str, set[int]]) -> _Keys:
        return tuple((k, tuple(sorted(v))) for k, v in sorted(keys.items()))

    return freeze(fold_min), freeze(exact_min)


# --- sentences, snippets, scoring text ---------------------------------------------------------


def _clean(s: str) -> str:
    return " ".join(s.split())


def _check_spans(text: str, spans: Sequence[tuple[int, int]]) -> None:
    for start, end in spans:
        if not 0 <= start <= end <= len(text):
            raise ValueError(f"span {(start, end)} is outside a text of {len(text)} characters")


def _sentence_index(sentences: list[tuple[int, int]], pos: int) -> int:
    """The sentence containing `pos`, else the first one after it, else the last one."""
    for i, (_, end) in enumerate(sentences):
        if pos < end:
            return i
    return len(sentences) - 1


def snippet_around(text: str, spans: Sequence[tuple[int, int]], *, max_chars: int = 320) -> str:
    """What a person reads next to a mention: the sentence holding the first match, then whole
    neighbouring sentences (next, previous, alternately) while they fit; a match sentence longer
    than `max_chars` is cut at word boundaries around the match, with "…" where it was cut.
    Whitespace is collapsed. Never longer than `max_chars`. No spans: the start of the text."""
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    _check_spans(text, spans)
    sentences = split_sentences(text)
    if not sentences:
        return ""
    first = min(spans) if spans else (sentences[0][0], sentences[0][0])
    lo = _sentence_index(sentences, first[0])
    hi = max(lo, _sentence_index(sentences, max(first[1] - 1, first[0])))
    start, end = sentences[lo][0], sentences[hi][1]
    if len(_clean(text[start:end])) > max_chars:
        return _trim_window(text, start, end, first, max_chars)
    grew = True
    while grew:
        grew = False
        if hi + 1 < len(sentences) and len(_clean(text[start : sentences[hi + 1][1]])) <= max_chars:
            hi += 1
            end = sentences[hi][1]
            grew = True
        if lo > 0 and len(_clean(text[sentences[lo - 1][0] : end])) <= max_chars:
            lo -= 1
            start = sentences[lo][0]
            grew = True
    return _clean(text[start:end])


def _trim_window(text: str, start: int, end: int, span: tuple[int, int], max_chars: int) -> str:
    a, b = max(span[0], start), min(span[1], end)
    budget = max_chars - 2  # room for an ellipsis at each end
    if budget < 1 or b - a >= budget:
        return _clean(text[a:end])[:max_chars]
    extra = budget - (b - a)
    ws = max(start, a - extra // 2)
    we = min(end, ws + budget)
    ws = max(start, we - budget)
    if ws > start and not text[ws - 1].isspace():
        # Cut mid-word: start at the next word instead, but never after the match.
        nxt = _SPACE.search(text, ws, a)
        ws = nxt.end() if nxt else a
    if we < end and not text[we].isspace() and not text[we - 1].isspace():
        # Cut mid-word: end at the previous space instead, but never before the match.
        spaces = [m.start() for m in _SPACE.finditer(text, b, we)]
        we = spaces[-1] if spaces else b
    piece = _clean(text[ws:we])
    return ("…" if ws > start else "") + piece + ("…" if we < end else "")


def scoring_text(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """What sentiment is scored on: the sentences holding the matches, joined, so a post's off-topic
    sentence ("traffic was awful") does not colour the brand's score. A match sentence that is
    very short (at most one word besides the matched terms: a title, "Re: Acme") brings the next
    sentence along. No spans (a link-only mention): the whole text."""
    _check_spans(text, spans)
    sentences = split_sentences(text)
    if not spans or not sentences:
        return _clean(text)
    chosen: dict[int, None] = {}
    for start, end in sorted(spans):
        first = _sentence_index(sentences, start)
        last = max(first, _sentence_index(sentences, max(end - 1, start)))
        for i in range(first, last + 1):
            chosen[i] = None
            if i + 1 < len(sentences) and _is_very_short(text, sentences[i], spans):
                chosen[i + 1] = None
    return " ".join(_clean(text[s:e]) for s, e in (sentences[i] for i in sorted(chosen)))


def _is_very_short(text: str, sentence: tuple[int, int], spans: Sequence[tuple[int, int]]) -> bool:
    s, e = sentence
    chars = list(text[s:e])
    for a, b in spans:
        for i in range(max(a, s), min(b, e)):
            chars[i - s] = " "
    words = [w for w in "".join(chars).split() if any(c.isalnum() for c in w)]
    return len(words) <= 1


# --- rules in words ----------------------------------------------------------------------------


def _rule_in_words(
    terms: Sequence[str], query: str | None, *, case_sensitive: bool, exclude: Sequence[str] = ()
) -> str:
    parts = []
    if terms:
        case = "exact case" if case_sensitive else "any case"
        parts.append(f"it names {_quoted(terms)} ({case})")
    if query:
        parts.append(q.describe(q.parse(query)))
    if not parts:
        return "never (no terms, no query)"
    rule = " and ".join(f"({p})" if len(parts) > 1 and i else p for i, p in enumerate(parts))
    if exclude:
        rule += f"; not where inside {_quoted(exclude)}"
    return rule


def describe_rules(brand: Brand) -> list[str]:
    """A brand's rule and its products', in plain words (what `listener check` prints)."""
    own = _rule_in_words(
        (*brand.terms, *brand.domains),
        brand.query,
        case_sensitive=brand.case_sensitive,
        exclude=brand.exclude,
    )
    lines = [f"a mention when {own}"]
    for p in brand.products:
        rule = _rule_in_words(p.terms, p.query, case_sensitive=brand.case_sensitive)
        lines.append(f"product {p.name} when {rule}")
    return lines


def _quoted(words: Sequence[str]) -> str:
    return ", ".join(f'"{w}"' for w in words)


# --- `listener match` ------------------------------------------------------------------------

_FIELDS = ("text", "title", "url", "author", "source", "lang")


def explain_item(matcher: Matcher, item: Item) -> dict[str, Any]:
    """What `listener match` prints for one item: each mention with its snippet and why, and why
    not for brands whose term or query word was found but a rule dropped it."""
    text = item_text(item)
    explained = matcher.explain(text, context=item_context(item))
    out: dict[str, Any] = {
        "mentions": [
            {
                "brand": m.brand,
                "product": m.product,
                "terms": list(m.terms),
                "snippet": snippet_around(text, m.spans),
                "why": why,
            }
            for m, why in explained.mentions
        ]
    }
    if explained.why_not:
        out["why_not"] = explained.why_not
    return out


def match_json_lines(matcher: Matcher, lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """`explain_item` over JSON lines {"text", "title", "url", "author", "source", "lang"} (all
    but text optional; an "id" is passed through). A line that cannot be read yields
    `{"error": ..., "line": n}` and the stream goes on."""
    for number, record, problem in read_objects(lines, '{"text": "...", "title": "..."}'):
        if record is None:
            yield {"error": problem, "line": number}
            continue
        bad = [k for k in _FIELDS if record.get(k) is not None and not isinstance(record[k], str)]
        if bad or not isinstance(record.get("text", ""), str):
            yield {"error": f'"{(bad or ["text"])[0]}" must be a string', "line": number}
            continue
        item = Item(
            source=record.get("source") or "",
            native_id=None,
            url=record.get("url") or "",
            title=record.get("title") or "",
            text=record.get("text") or "",
            author=record.get("author"),
            extra={"lang": record["lang"]} if record.get("lang") else {},
        )
        out = explain_item(matcher, item)
        if "id" in record:
            out = {"id": record["id"], **out}
        yield out
