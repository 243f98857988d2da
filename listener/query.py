"""The brand query language: parse a `query:` into a small tree, and say it back in words.

The syntax is the one social-listening users know from the paid tools:

    (Linear OR linear.app) AND NOT ("linear algebra" OR "linear regression")
    Pitch NEAR/3 (deck OR slides) AND NOT site:pitchfork.com
    title:Notion OR author:NotionHQ OR -"notion of"

- a word (`linear`, `linear.app`, `@linear`, `#linear`), a `"quoted phrase"`, `{Linear}` for that
  exact case, a trailing `*` for any ending (`pitch*`);
- `AND`, `OR`, `NOT` (upper case; `-word` is NOT too); words side by side are ANDed; AND binds
  tighter than OR; parentheses group;
- `A NEAR/n B`: A within n words of B, either order (A and B are words, phrases or OR-groups of them);
- scopes: `title:`, `site:` (the post's domain), `author:`, `source:` (a configured source's name),
  `lang:` (a language code), before a word, a phrase or a parenthesised group.

Parsing is pure: `parse` returns the tree or raises `QueryError` with the column (1-based) and what
was expected there. Matching the tree against text lives in `listener.match`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

SCOPES = ("title", "site", "author", "source", "lang")
# Scopes that look at the text of the post (and so can anchor a snippet): None is the whole text.
TEXT_SCOPES = (None, "title")


class QueryError(ValueError):
    """A query that cannot be parsed: `column` (1-based) and what was `expected` there."""

    def __init__(self, column: int, expected: str, found: str) -> None:
        self.column = column
        self.expected = expected
        self.found = found
        super().__init__(f"column {column}: expected {expected}, found {found}")


@dataclass(frozen=True, slots=True)
class Word:
    """A word or phrase; `scope` None looks in the whole text."""

    text: str
    phrase: bool = False
    scope: str | None = None
    exact_case: bool = False
    prefix: bool = False  # `pitch*`: any word starting so


@dataclass(frozen=True, slots=True)
class And:
    parts: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    parts: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    part: Node


@dataclass(frozen=True, slots=True)
class Near:
    left: Node  # a Word or an Or of Words
    right: Node
    distance: int


Node = Word | And | Or | Not | Near


# --- tokens ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # word phrase exact ( ) AND OR NOT NEAR - scope end
    value: str
    column: int  # 1-based
    near: int = 0


_NEAR_RE = re.compile(r"NEAR/(\d+)")
_SPECIAL = set('()"{}')


def _describe_token(tok: _Token) -> str:
    if tok.kind == "end":
        return "the end of the query"
    if tok.kind == "phrase":
        return f'"{tok.value}"'
    if tok.kind == "NEAR":
        return f"NEAR/{tok.near}"
    if tok.kind == "scope":
        return f"{tok.value}:"
    if tok.kind == "exact":
        return "{" + tok.value + "}"
    return tok.value if tok.kind in ("AND", "OR", "NOT") else f"'{tok.value}'"


def _tokens(query: str) -> Iterator[_Token]:
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        col = i + 1
        if ch.isspace():
            i += 1
        elif ch in "()":
            yield _Token(ch, ch, col)
            i += 1
        elif ch == '"':
            end = query.find('"', i + 1)
            if end == -1:
                raise QueryError(col, 'a closing " for this phrase', "the end of the query")
            phrase = " ".join(query[i + 1 : end].split())
            if not phrase:
                raise QueryError(col, "words between the quotes", '""')
            yield _Token("phrase", phrase, col)
            i = end + 1
        elif ch == "{":
            end = query.find("}", i + 1)
            if end == -1:
                raise QueryError(
                    col, "a closing } for this exact-case word", "the end of the query"
                )
            word = " ".join(query[i + 1 : end].split())
            if not word:
                raise QueryError(col, "a word between the braces", "{}")
            yield _Token("exact", word, col)
            i = end + 1
        elif ch == "}":
            raise QueryError(col, "a word, a phrase or '('", "'}'")
        elif ch == "-" and i + 1 < n and not query[i + 1].isspace():
            yield _Token("-", "-", col)
            i += 1
        else:
            j = i
            while j < n and not query[j].isspace() and query[j] not in _SPECIAL:
                j += 1
            word = query[i:j]
            i = j
            head, colon, rest = word.partition(":")
            if colon and head.lower() in SCOPES:
                yield _Token("scope", head.lower(), col)
                if rest:
                    yield _Token("word", rest, col + len(head) + 1)
                elif i >= n or query[i].isspace():
                    raise QueryError(
                        col + len(word), f"a word, a phrase or '(' after {head}:", "a space"
                    )
                continue
            if word in ("AND", "OR", "NOT"):
                yield _Token(word, word, col)
            elif word.startswith("NEAR"):
                m = _NEAR_RE.fullmatch(word)
                if m is None:
                    raise QueryError(col, "NEAR/n with a number of words, like NEAR/3", f"'{word}'")
                yield _Token("NEAR", word, col, near=int(m.group(1)))
            else:
                yield _Token("word", word, col)
    yield _Token("end", "", n + 1)


# --- parser ------------------------------------------------------------------------------------


class _Parser:
    """query  := or
    or     := and (OR and)*
    and    := near ((AND)? near)*        words side by side are ANDed
    near   := unary (NEAR/n unary)*
    unary  := (NOT | -) unary | scope? atom
    atom   := word | phrase | {exact} | ( or )"""

    def __init__(self, query: str) -> None:
        self.tokens = list(_tokens(query))
        self.pos = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def fail(self, expected: str) -> QueryError:
        return QueryError(self.tok.column, expected, _describe_token(self.tok))

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise self.fail("a word, a phrase or '('")
        node = self.or_()
        if self.tok.kind != "end":
            if self.tok.kind == ")":
                raise self.fail("the end of the query (this ')' closes nothing)")
            raise self.fail("AND, OR or the end of the query")
        return node

    def or_(self) -> Node:
        parts = [self.and_()]
        while self.tok.kind == "OR":
            self.take()
            parts.append(self.and_("after OR"))
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def and_(self, after: str = "") -> Node:
        parts = [self.near(after)]
        while True:
            if self.tok.kind == "AND":
                self.take()
                parts.append(self.near("after AND"))
            elif self.tok.kind in ("word", "phrase", "exact", "(", "NOT", "-", "scope"):
                parts.append(self.near())
            else:
                break
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def near(self, after: str = "") -> Node:
        left = self.unary(after)
        while self.tok.kind == "NEAR":
            tok = self.take()
            right = self.unary(f"after NEAR/{tok.near}")
            for side, node in (("before", left), ("after", right)):
                if not _text_words(node):
                    raise QueryError(
                        tok.column,
                        f"words, phrases or (a OR b) of them {side} NEAR/{tok.near}",
                        "a scope, NOT or AND" if not isinstance(node, Near) else "another NEAR",
                    )
            left = Near(left, right, tok.near)
        return left

    def unary(self, after: str = "") -> Node:
        if self.tok.kind in ("NOT", "-"):
            tok = self.take()
            return Not(self.unary(f"after {'NOT' if tok.kind == 'NOT' else '-'}"))
        scope = None
        if self.tok.kind == "scope":
            scope = self.take().value
            after = f"after {scope}:"
        return self.atom(scope, after)

    def atom(self, scope: str | None, after: str) -> Node:
        where = f" {after}" if after else ""
        tok = self.tok
        if tok.kind in ("word", "phrase", "exact"):
            self.take()
            text = tok.value
            prefix = tok.kind == "word" and text.endswith("*") and len(text) > 1
            if prefix:
                text = text.rstrip("*")
                if not text:
                    raise QueryError(tok.column, f"a word before *{where}", f"'{tok.value}'")
            if scope not in TEXT_SCOPES and (prefix or tok.kind == "exact"):
                raise QueryError(
                    tok.column, f"a plain word or phrase after {scope}:", f"'{tok.value}'"
                )
            return Word(
                text=text,
                phrase=tok.kind == "phrase",
                scope=scope,
                exact_case=tok.kind == "exact",
                prefix=prefix,
            )
        if tok.kind == "(":
            self.take()
            node = self.or_()
            if self.tok.kind != ")":
                raise self.fail("')' to close the '(' at column " + str(tok.column))
            self.take()
            return _scoped(node, scope) if scope else node
        raise self.fail(f"a word, a phrase or '('{where}")


def _scoped(node: Node, scope: str) -> Node:
    """`title:(a OR b)`: the scope applies to every word of the group that has none."""
    if isinstance(node, Word):
        if node.scope is None:
            return Word(node.text, node.phrase, scope, node.exact_case, node.prefix)
        return node
    if isinstance(node, And):
        return And(tuple(_scoped(p, scope) for p in node.parts))
    if isinstance(node, Or):
        return Or(tuple(_scoped(p, scope) for p in node.parts))
    if isinstance(node, Not):
        return Not(_scoped(node.part, scope))
    return Near(_scoped(node.left, scope), _scoped(node.right, scope), node.distance)


def _text_words(node: Node) -> bool:
    """Whether `node` is a word or an OR of words that look in the text (what NEAR takes)."""
    if isinstance(node, Word):
        return node.scope in TEXT_SCOPES
    if isinstance(node, Or):
        return all(_text_words(p) for p in node.parts)
    return False


def parse(query: str) -> Node:
    """The tree of `query`; QueryError (a ValueError) with the column and what was expected."""
    return _Parser(query).parse()


# --- what a tree holds ---------------------------------------------------------------------------


def words(node: Node, *, negated: bool = False) -> Iterator[tuple[Word, bool]]:
    """Every word of the tree with whether it sits under a NOT."""
    if isinstance(node, Word):
        yield node, negated
    elif isinstance(node, And | Or):
        for part in node.parts:
            yield from words(part, negated=negated)
    elif isinstance(node, Not):
        yield from words(node.part, negated=not negated)
    else:
        yield from words(node.left, negated=negated)
        yield from words(node.right, negated=negated)


def positive_words(node: Node) -> tuple[Word, ...]:
    """The words that, found in the text, anchor a mention's snippet (text words not under a NOT)."""
    return tuple(dict.fromkeys(w for w, neg in words(node) if not neg and w.scope in TEXT_SCOPES))


# --- in words ----------------------------------------------------------------------------------


def _word_in_words(w: Word) -> str:
    shown = f'"{w.text}{"…" if w.prefix else ""}"'
    if w.exact_case:
        shown += " (exact case)"
    if w.scope == "title":
        return f"{shown} in the title"
    if w.scope == "site":
        return f"posted on {w.text}"
    if w.scope == "author":
        return f"by {w.text}"
    if w.scope == "source":
        return f"from source {w.text}"
    if w.scope == "lang":
        return f"in language {w.text}"
    return shown


def describe(node: Node) -> str:
    """The rule in plain words, as `listener check` shows it."""
    if isinstance(node, Word):
        return _word_in_words(node)
    if isinstance(node, Or):
        return " or ".join(_grouped(p, Or) for p in node.parts)
    if isinstance(node, And):
        return ", and ".join(_grouped(p, And) for p in node.parts)
    if isinstance(node, Not):
        inner = node.part
        if isinstance(inner, Or) and all(
            isinstance(p, Word) and p.scope in TEXT_SCOPES for p in inner.parts
        ):
            return "none of " + ", ".join(_word_in_words(p) for p in inner.parts)  # type: ignore[arg-type]
        if isinstance(inner, Word) and inner.scope in TEXT_SCOPES:
            return f"not {_word_in_words(inner)}"
        return (
            f"not ({describe(inner)})"
            if isinstance(inner, And | Or | Near)
            else (f"not {describe(inner)}")
        )
    return (
        f"{_grouped(node.left, Near)} within {node.distance} "
        f"word{'s' if node.distance != 1 else ''} of {_grouped(node.right, Near)}"
    )


def _grouped(node: Node, parent: type) -> str:
    text = describe(node)
    if isinstance(node, And | Or) and not isinstance(node, parent):
        return f"({text})"
    return text
